"""Queries over both stores: Iceberg history joined to the Kafka tail at an exact seam.

    engine = HybridQueryEngine(K2Settings.from_env())
    result = engine.query("BTCUSDT", "now-15m", "now", exchange="binance")
    result.rows                 # Arrow table, oldest first, each record once
    result.provenance.as_dict() # snapshot, seam offsets, rows per source, latency, warnings

Modules: `kafka_tail` (assign() + fetch-reported high watermarks), `historical` (Iceberg
at a pinned snapshot), `merge` (pure seam/dedup/order functions), `hybrid` (the engine),
`timeparse` (the time forms users type). See docs/decisions/006-hybrid-query-seam.md.
"""

from k2lib.query.historical import IcebergReader, PinnedSnapshot
from k2lib.query.hybrid import EngineConfig, HybridQueryEngine
from k2lib.query.kafka_tail import KafkaTail, TailConfig, TailResult
from k2lib.query.merge import RESULT_SCHEMA, merge_sides, to_records
from k2lib.query.provenance import Provenance, QueryResult
from k2lib.query.spec import QUERY_SOURCES, QuerySpec
from k2lib.query.timeparse import TIME_FORMS_HELP, format_micros, parse_time

__all__ = [
    "QUERY_SOURCES",
    "RESULT_SCHEMA",
    "TIME_FORMS_HELP",
    "EngineConfig",
    "HybridQueryEngine",
    "IcebergReader",
    "KafkaTail",
    "PinnedSnapshot",
    "Provenance",
    "QueryResult",
    "QuerySpec",
    "TailConfig",
    "TailResult",
    "format_micros",
    "merge_sides",
    "parse_time",
    "to_records",
]
