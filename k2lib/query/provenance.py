"""Where every part of an answer came from. Returned with every query, never optional.

`partial` is the one flag a caller must check: it is True only when the caller allowed a
partial answer and one side failed or the broker had lost data; the reasons are in
`warnings`. Without `allow_partial` those cases raise instead (see hybrid.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from k2lib.query.merge import ICEBERG, KAFKA, to_records
from k2lib.query.timeparse import format_micros

__all__ = ["MODES", "Provenance", "QueryResult", "newest_ts"]

# offset: Iceberg at S + Kafka from S's recorded offsets (exact).
# time-overlap: the table recorded no offsets; Kafka rows newer than their symbol's newest
#   Iceberg row minus a buffer are added and deduplicated (the plan's 2-minute buffer).
# topic-recreated: the topic's id on the broker is not the one the snapshot recorded, so
#   the recorded offsets are of a topic that is gone: Iceberg at S + the whole new topic,
#   deduplicated. `topic_id` and `recorded_topic_id` say which ids differed.
# historical / realtime: one side only, as asked.
MODES = ("offset", "time-overlap", "topic-recreated", "historical", "realtime")


@dataclass(frozen=True, kw_only=True)
class Provenance:
    source: str  # the source that answered (may differ from `requested_source`)
    requested_source: str
    mode: str
    table: str
    topic: str
    topic_id: str | None = None  # the broker's id for `topic` now (None: not looked up, or none)
    recorded_topic_id: str | None = None  # the id the snapshot's offsets were recorded against
    snapshot_id: int | None
    offsets_snapshot_id: int | None  # the ancestor whose recorded offsets are the seam
    snapshot_committed_ms: int | None
    seam: Mapping[int, int]  # first Kafka offset read per partition (-2: the beginning)
    high_watermarks: Mapping[int, int]  # where the tail read stopped, from fetch responses
    partitions: tuple[int, ...]
    rows_by_source: Mapping[str, int]
    kafka_records_read: int = 0  # fetched from the broker by this query
    kafka_records_cached: int = 0  # served from the tail cache (fetched by earlier queries)
    deferred_files: int = 0  # spill files of shed records read (see deferred.py)
    dlq_skipped: int = 0
    duplicates_removed: int = 0
    truncated: int = 0
    newest_us: Mapping[str, int | None] = field(default_factory=dict)
    now_us: int = 0
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    overlap_buffer_s: float | None = None
    partial: bool = False
    warnings: tuple[str, ...] = ()

    def freshness(self) -> dict[str, Any]:
        """Newest exch_ts per side, the snapshot's commit time, and how old each is."""
        out: dict[str, Any] = {}
        for side in (ICEBERG, KAFKA):
            newest = self.newest_us.get(side)
            out[f"{side}_newest_exch_ts"] = format_micros(newest) if newest is not None else None
            out[f"{side}_age_s"] = _age(self.now_us, newest)
        committed = self.snapshot_committed_ms
        committed_us = committed * 1000 if committed is not None else None
        out["snapshot_committed_at"] = format_micros(committed_us) if committed_us else None
        out["snapshot_age_s"] = _age(self.now_us, committed_us)
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (partition keys become strings, as JSON requires)."""
        return {
            "source": self.source,
            "requested_source": self.requested_source,
            "mode": self.mode,
            "table": self.table,
            "topic": self.topic,
            "topic_id": self.topic_id,
            "recorded_topic_id": self.recorded_topic_id,
            "snapshot_id": self.snapshot_id,
            "offsets_snapshot_id": self.offsets_snapshot_id,
            "seam": {str(p): o for p, o in sorted(self.seam.items())},
            "high_watermarks": {str(p): o for p, o in sorted(self.high_watermarks.items())},
            "partitions": list(self.partitions),
            "rows_by_source": dict(self.rows_by_source),
            "kafka_records_read": self.kafka_records_read,
            "kafka_records_cached": self.kafka_records_cached,
            "deferred_files": self.deferred_files,
            "dlq_skipped": self.dlq_skipped,
            "duplicates_removed": self.duplicates_removed,
            "truncated": self.truncated,
            "freshness": self.freshness(),
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "overlap_buffer_s": self.overlap_buffer_s,
            "partial": self.partial,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True, slots=True)
class QueryResult:
    rows: pa.Table  # RESULT_SCHEMA (merge.py), oldest first
    provenance: Provenance

    def __len__(self) -> int:
        return self.rows.num_rows

    def records(self) -> list[dict[str, Any]]:
        return to_records(self.rows)

    def as_dict(self) -> dict[str, Any]:
        """`{"rows": [...], "provenance": {...}}`: the JSON of `k2 query` and the API."""
        return {"rows": self.records(), "provenance": self.provenance.as_dict()}


def newest_ts(table: pa.Table) -> int | None:
    """Newest exch_ts of a table in microseconds, or None when it is empty."""
    if table.num_rows == 0:
        return None
    value = pc.max(table.column("exch_ts").cast(pa.int64())).as_py()
    return int(value) if value is not None else None


def _age(now_us: int, then_us: int | None) -> float | None:
    if then_us is None or not now_us:
        return None
    return round((now_us - then_us) / 1e6, 3)
