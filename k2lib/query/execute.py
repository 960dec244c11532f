"""The steps of one hybrid query: pin the snapshot, choose the seam, read both sides at
once, check the seam, merge, and say where everything came from."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import CollectorRegistry, Counter, Histogram

from k2lib.clock import Clock
from k2lib.config import K2Settings
from k2lib.errors import InconsistentSeamError, QueryError, ServiceError
from k2lib.query.deferred import DeferredRows, read_deferred
from k2lib.query.historical import IcebergReader, PinnedSnapshot
from k2lib.query.kafka_tail import KafkaTail, TailResult
from k2lib.query.merge import (
    ICEBERG,
    KAFKA,
    OFFSET_BEGINNING,
    SPILL,
    MergeOutcome,
    drop_ingested,
    empty_result,
    filter_batch,
    filter_rows,
    merge_sides,
    seam_offsets,
    tag_source,
)
from k2lib.query.provenance import Provenance, QueryResult, newest_ts
from k2lib.query.spec import QuerySpec
from k2lib.resilience.spill import spill_directory
from k2lib.wire.schema import TradeBatch

__all__ = ["QueryContext", "QueryMetrics", "QueryRun"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class QueryMetrics:
    """The engine's own metrics (the API adds request-level ones)."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.rows = Counter("k2_query_rows", "Rows returned, by source", ["source"], registry=r)
        self.dups = Counter(
            "k2_query_duplicates_removed", "Rows dropped by the seam dedup", registry=r
        )
        self.side = Histogram(
            "k2_query_side_latency_seconds",
            "Latency of each query side",
            ["side"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.partial = Counter("k2_query_partial", "Answers flagged partial", registry=r)
        self.seam_errors = Counter(
            "k2_query_seam_inconsistent",
            "Queries that found the broker behind the snapshot",
            registry=r,
        )


@dataclass(frozen=True, kw_only=True)
class QueryContext:
    """What one query runs on: the engine's collaborators, handed over explicitly."""

    settings: K2Settings
    reader: IcebergReader
    tail: KafkaTail
    pool: Executor
    overlap_buffer_s: float
    clock: Clock
    now: Callable[[], int]
    metrics: QueryMetrics | None = None


class QueryRun:
    """One query: the pinned snapshot, both sides, and everything provenance reports."""

    def __init__(self, context: QueryContext, q: QuerySpec) -> None:
        self.e, self.q = context, q
        self.topic = context.settings.topic
        self.latency: dict[str, float] = {}
        self.warnings: list[str] = []
        self.partial = False
        self.deferred_files = 0
        self.topic_id: str | None = None  # the broker's id for the topic, when looked up
        self.t0 = context.clock()

    def execute(self) -> QueryResult:
        q, pool = self.q, self.e.pool
        # Shed records are behind the seam but not in Iceberg yet. Reading the spill before
        # and after the pin means each is in one of the reads or in S (deferred.py).
        before = self._deferred() if q.source == "hybrid" else None
        pinned = self._timed("pin", self._pin) if q.source != "realtime" else None
        after = self._deferred(before.files) if before is not None else None
        partitions = () if q.source == "historical" else self._partitions()
        mode = self._mode(pinned)
        seam = self._seam(pinned, mode, partitions)
        ice_f = pool.submit(self._timed, ICEBERG, self._read_iceberg, pinned)
        kafka_f = pool.submit(self._timed, KAFKA, self._read_kafka, partitions, seam)
        iceberg = self._settle(ICEBERG, ice_f)
        tail, kafka_rows = self._settle(KAFKA, kafka_f) or (None, None)
        kafka = self._kafka_rows(kafka_rows, mode, iceberg)
        iceberg = iceberg if iceberg is not None else empty_result()
        t = self.e.clock()
        deferred = pa.concat_tables([before.rows, after.rows]) if before and after else None
        merged = merge_sides(iceberg, kafka, q.limit, deferred)
        self.deferred_files = len(before.files | after.files) if before and after else 0
        self.latency["merge"] = (self.e.clock() - t) * 1e3
        self.latency["total"] = (self.e.clock() - self.t0) * 1e3
        if q.source == "historical" and pinned is not None:
            seam = dict(pinned.offsets.offsets)  # what S covers, for the reader's information
        prov = self._provenance(pinned, mode, seam, tail, merged, iceberg, kafka)
        return QueryResult(merged.rows, prov)

    # -- steps ----------------------------------------------------------------------

    def _deferred(self, skip: frozenset[str] = frozenset()) -> DeferredRows:
        q = self.q
        directory = spill_directory(self.e.settings)
        return read_deferred(directory, q.symbols, q.exchange, q.start_us, q.end_us, skip=skip)

    def _pin(self) -> PinnedSnapshot | None:
        try:
            return self.e.reader.pin()
        except QueryError:
            raise
        except Exception as exc:
            self._side_failed(ICEBERG, exc)
            return None

    def _mode(self, pinned: PinnedSnapshot | None) -> str:
        if self.q.source != "hybrid":
            return self.q.source
        if pinned is None or pinned.snapshot is None:
            return "offset"  # nothing in Iceberg yet: every partition from its beginning
        recorded = pinned.offsets
        if recorded.recorded and recorded.topic == self.topic:
            if not self._recreated(recorded.topic_id):
                return "offset"
            # The recorded offsets belong to a topic that no longer exists. The new one
            # restarts at 0, so reading it from the seam would miss [0, seam) of it.
            self.warnings.append(
                f"topic {self.topic!r} was recreated on the broker (id {self.topic_id}, "
                f"the snapshot recorded {recorded.topic_id}): its recorded offsets belong "
                "to the old topic, so the new one was read from its beginning, "
                "deduplicated; records of the old topic past the seam are not on the "
                "broker any more"
            )
            return "topic-recreated"
        why = (
            f"recorded offsets are for topic {recorded.topic!r}, not {self.topic!r}"
            if recorded.recorded
            else "the table's commits recorded no Kafka offsets"
        )
        self.warnings.append(
            f"{why}; time-overlap seam with a "
            f"{self.e.overlap_buffer_s:g}s buffer per symbol, deduplicated"
        )
        return "time-overlap"

    def _recreated(self, recorded_id: str | None) -> bool:
        # Either id unknown (an older snapshot, a broker without topic ids): offsets and
        # the behind check alone decide, as before topic ids were recorded.
        current = self.topic_id
        return recorded_id is not None and current is not None and recorded_id != current

    def _partitions(self) -> tuple[int, ...]:
        """The partitions to read, and the topic's current id (`self.topic_id`)."""
        q, tail = self.q, self.e.tail
        try:
            # Looked up on every query (0.5 ms): it also drops what the tail cached of a
            # topic that has since been recreated.
            self.topic_id = tail.topic_id(self.topic)
            if q.exchange is not None:  # the key is exchange:symbol, so one partition each
                keys = [f"{q.exchange}:{s}".encode() for s in q.symbols]
                return tuple(tail.partitions_for_keys(self.topic, keys))
            return tuple(range(tail.partition_count(self.topic)))
        except QueryError:
            raise
        except Exception as exc:
            self._side_failed(KAFKA, exc)
            return ()

    def _seam(
        self, pinned: PinnedSnapshot | None, mode: str, partitions: tuple[int, ...]
    ) -> dict[int, int]:
        if mode == "offset" and pinned is not None and pinned.offsets.recorded:
            return seam_offsets(pinned.offsets.offsets, partitions)
        return dict.fromkeys(partitions, OFFSET_BEGINNING)

    def _read_iceberg(self, pinned: PinnedSnapshot | None) -> pa.Table | None:
        if pinned is None:
            return None
        q = self.q
        rows = self.e.reader.read(pinned, q.symbols, q.exchange, q.start_us, q.end_us)
        return filter_rows(tag_source(rows, ICEBERG), q.symbols, q.exchange, q.start_us, q.end_us)

    def _read_kafka(
        self, partitions: tuple[int, ...], seam: dict[int, int]
    ) -> tuple[TailResult, pa.Table] | None:
        if not partitions:
            return None
        q = self.q

        def wanted(batch: TradeBatch) -> Any:
            return filter_batch(batch, q.symbols, q.exchange, q.start_us, q.end_us)

        result = self.e.tail.read(self.topic, seam, predicate=wanted)
        if result.behind:
            result = self._behind(result, wanted)
        if result.incomplete:
            raise ServiceError(
                f"partitions {result.incomplete} of {self.topic!r} did not reach "
                f"their high watermark within {self.e.tail.config.timeout_s:g}s"
            )
        return result, tag_source(result.rows, KAFKA)

    def _behind(self, result: TailResult, wanted: Callable[[TradeBatch], Any]) -> TailResult:
        detail = ", ".join(
            f"partition {p}: high watermark {hw} < recorded offset {off}"
            for p, (off, hw) in sorted(result.behind.items())
        )
        message = (
            f"the broker is behind the Iceberg snapshot ({detail}): it lost data, "
            "e.g. an in-memory broker restarted"
        )
        if self.e.metrics is not None:
            self.e.metrics.seam_errors.inc()
        if not self.q.allow_partial:
            raise InconsistentSeamError(message)
        self.partial = True
        self.warnings.append(f"{message}; those partitions were read from their beginning")
        again = self.e.tail.read(
            self.topic, dict.fromkeys(result.behind, OFFSET_BEGINNING), predicate=wanted
        )
        return replace(
            result,
            batch=TradeBatch.concat([result.batch, again.batch]),
            rows=pa.concat_tables([result.rows, again.rows]),
            end_offsets={**result.end_offsets, **again.end_offsets},
            incomplete=sorted(set(result.incomplete) | set(again.incomplete)),
            records_read=result.records_read + again.records_read,
            records_cached=result.records_cached + again.records_cached,
        )

    def _kafka_rows(self, rows: pa.Table | None, mode: str, iceberg: pa.Table | None) -> pa.Table:
        if rows is None:
            return empty_result()
        if mode == "time-overlap" and iceberg is not None:
            # Without offsets, Kafka rows older than their symbol's newest Iceberg row minus
            # the buffer are taken to be ingested already (merge.drop_ingested).
            rows = drop_ingested(rows, iceberg, int(self.e.overlap_buffer_s * 1e6))
        return rows

    # -- helpers --------------------------------------------------------------------

    def _timed(self, side: str, fn: Callable[..., Any], *args: Any) -> Any:
        t = self.e.clock()
        try:
            return fn(*args)
        finally:
            elapsed = self.e.clock() - t
            self.latency[side] = elapsed * 1e3
            if self.e.metrics is not None and side != "pin":
                self.e.metrics.side.labels(side).observe(elapsed)

    def _settle(self, side: str, future: Future[Any]) -> Any:
        try:
            return future.result()
        except QueryError:
            raise  # a bad request or an inconsistent seam: never downgraded to partial
        except Exception as exc:
            self._side_failed(side, exc)
            return None

    def _side_failed(self, side: str, exc: Exception) -> None:
        if not self.q.allow_partial:
            raise ServiceError(f"the {side} side of the query failed: {exc}") from exc
        self.partial = True
        self.warnings.append(f"the {side} side failed and its rows are missing: {exc}")

    def _provenance(
        self,
        pinned: PinnedSnapshot | None,
        mode: str,
        seam: dict[int, int],
        tail: TailResult | None,
        merged: MergeOutcome,
        iceberg: pa.Table,
        kafka: pa.Table,
    ) -> Provenance:
        counts = {ICEBERG: 0, SPILL: 0, KAFKA: 0}
        if merged.rows.num_rows:
            values, sizes = pc.value_counts(merged.rows.column("source")).flatten()
            counts.update(zip(values.to_pylist(), sizes.to_pylist(), strict=True))
        if (m := self.e.metrics) is not None:
            for side, n in counts.items():
                m.rows.labels(side).inc(n)
            m.dups.inc(merged.duplicates_removed)
            if self.partial:
                m.partial.inc()
        return Provenance(
            source=self.q.source,
            requested_source=self.q.source,
            mode=mode,
            table=self.e.settings.table,
            topic=self.topic,
            topic_id=self.topic_id,
            recorded_topic_id=pinned.offsets.topic_id if pinned else None,
            snapshot_id=pinned.snapshot_id if pinned else None,
            offsets_snapshot_id=pinned.offsets.snapshot_id if pinned else None,
            snapshot_committed_ms=pinned.committed_ms if pinned else None,
            seam=seam,
            high_watermarks=tail.end_offsets if tail else {},
            partitions=tuple(sorted(seam)),
            rows_by_source=counts,
            kafka_records_read=tail.records_read if tail else 0,
            kafka_records_cached=tail.records_cached if tail else 0,
            deferred_files=self.deferred_files,
            dlq_skipped=tail.dlq_skipped if tail else 0,
            duplicates_removed=merged.duplicates_removed,
            truncated=merged.truncated,
            newest_us={ICEBERG: newest_ts(iceberg), KAFKA: newest_ts(kafka)},
            now_us=self.e.now(),
            latency_ms=dict(self.latency),
            overlap_buffer_s=self.e.overlap_buffer_s if mode == "time-overlap" else None,
            partial=self.partial,
            warnings=tuple(self.warnings),
        )
