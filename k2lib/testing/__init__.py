"""What ships for tests and benchmarks: in-process twins of the outside services, and data
helpers. The core never imports this package; it imports the core.

- `services`: `ListSource` (Kafka), `ListDeadLetters` (the DLQ), `MemoryStateLedger` (the
  Redis state ledger), for unit tests that drive the commit ordering step by step;
- `dedup.MemoryDedupStore`: the Redis dedup tier's twin;
- `sequence.MemorySequenceTracker`: the Redis sequence tracker's twin;
- `streams`: a faulty feed with its ground truth (`faulty_stream`, `FaultyStreamSpec`);
- `trades`: a seeded trade generator, a keyed producer like K2's, and an Iceberg append that
  records offsets as the ingest writer does.

Twins serve unit tests only: integration tests, notebooks and the demo run the real services.
"""

from __future__ import annotations

from k2lib.testing.dedup import MemoryDedupStore
from k2lib.testing.sequence import MemorySequenceTracker
from k2lib.testing.services import ListDeadLetters, ListSource, MemoryStateLedger
from k2lib.testing.streams import FaultyStreamSpec, StreamTruth, faulty_stream, missing_ranges
from k2lib.testing.trades import (
    DEFAULT_SYMBOLS,
    append_with_offsets,
    ingest_prefix,
    next_seq,
    produce,
    synthetic_trades,
)

__all__ = [
    "DEFAULT_SYMBOLS",
    "FaultyStreamSpec",
    "ListDeadLetters",
    "ListSource",
    "MemoryDedupStore",
    "MemorySequenceTracker",
    "MemoryStateLedger",
    "StreamTruth",
    "append_with_offsets",
    "faulty_stream",
    "ingest_prefix",
    "missing_ranges",
    "next_seq",
    "produce",
    "synthetic_trades",
]
