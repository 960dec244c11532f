"""The ingest pipeline: poll -> decode/validate -> shed -> sequence -> dedup -> Iceberg.

It works a poll at a time on columns, and overlaps each Iceberg commit with the next poll.
Its collaborators sit behind small seams, so the commit ordering can be driven in-process:
a `TradeSource` (the Kafka consumer), a `TableSink` (the compare-and-set Iceberg writer), a
`DeadLetterSink` and the `Stages` (load shedder, deduplicator, sequence tracker, degradation
manager). `IngestPipeline.from_settings` builds the real ones.

Exactly once, by construction (ADR 011):

- a commit appends rows and every partition's next offset in one snapshot, and lands only if
  the table still records what this writer started from; otherwise nothing is appended and
  the pipeline *rewinds*: it drops its buffer and every key not yet recorded, re-reads the
  table, brings the Redis state up to it, and seeks the consumer to the recorded offsets;
- before each commit the DLQ is flushed with delivery confirmed, and the Redis state is
  verified to be the one the buffered rows were checked against (a FLUSHALL or failover in
  between means a rewind, not a commit).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from prometheus_client import CollectorRegistry
from pyiceberg.catalog import Catalog

from k2lib.config import K2Settings
from k2lib.errors import (
    CircuitOpenError,
    CommitFencedError,
    DiskFullError,
    ServiceError,
    StorageError,
)
from k2lib.ingestion.dlq import DeadLetterQueue, DeadLetterSink
from k2lib.ingestion.metrics import IngestMetrics
from k2lib.ingestion.stages import CommitTicket, Stages
from k2lib.monitoring import new_registry
from k2lib.storage.maintenance import MaintenanceConfig, run_maintenance
from k2lib.storage.table import SnapshotOffsets
from k2lib.storage.writer import CommitResult
from k2lib.wire.codec import decode_batch
from k2lib.wire.schema import TradeBatch

__all__ = ["IngestConfig", "IngestPipeline", "TableSink", "TradeSource"]

log = logging.getLogger("k2.ingest")


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    poll_max: int = 20_000
    poll_timeout_s: float = 0.5
    commit_rows: int = 250_000
    commit_interval_s: float = 2.0
    group_id: str = "k2-ingest"
    partitions: tuple[int, ...] | None = None
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    final_commit_attempts: int = 30


class TradeSource(Protocol):
    """The Kafka side: `TradeConsumer`, or a list-backed twin in unit tests."""

    topic: str
    partitions: list[int]
    resets: list[int]

    def assign(self, start: Mapping[int, int]) -> None: ...
    def poll(self, max_messages: int, timeout_s: float) -> Any: ...
    def lag(self) -> int: ...
    def commit(self, offsets: Mapping[int, int]) -> None: ...
    def close(self) -> None: ...
    def topic_recreated(self) -> Any: ...
    def rewind(self, change: Any) -> None: ...
    @property
    def topic_id(self) -> str | None: ...


class TableSink(Protocol):
    """The Iceberg side: `IcebergWriter`, whose commit is compare-and-set on the offsets."""

    table: Any
    topic_id: str | None
    base: SnapshotOffsets
    delay_s: Callable[[], float] | None

    def rebase(self) -> SnapshotOffsets: ...
    def commit(
        self,
        batch: TradeBatch,
        offsets: Mapping[int, int],
        extra_properties: Mapping[str, str] | None = None,
    ) -> CommitResult: ...


@dataclass
class _InFlight:
    future: Future[CommitResult]
    batches: list[TradeBatch]
    offsets: dict[int, int]
    ticket: CommitTicket


@dataclass
class _Counts:
    consumed: int = 0
    written: int = 0
    dlq: int = 0
    commits: int = 0
    failed_commits: int = 0
    rewinds: int = 0
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    rewind_reasons: dict[str, int] = field(default_factory=dict)


class IngestPipeline:
    def __init__(
        self,
        *,
        source: TradeSource,
        sink: TableSink,
        dlq: DeadLetterSink,
        stages: Stages | None = None,
        config: IngestConfig = IngestConfig(),
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.consumer = source
        self.writer = sink
        self.table = sink.table
        self.dlq = dlq
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.registry = registry if registry is not None else new_registry()
        self.metrics = IngestMetrics.create(self.registry)
        self.stages = stages or Stages()
        self.counts = _Counts()
        self.buffer: list[TradeBatch] = []
        self.buffered_rows = 0
        self.next_offsets: dict[int, int] = {}
        self.committed_offsets: dict[int, int] = {}
        self.resume = sink.base
        self.last_commit = clock()
        self._stop = False
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="k2-commit")
        self._inflight: _InFlight | None = None
        self._rate_window: tuple[float, int] = (clock(), 0)
        self.stages.start(self.table, self.consumer.partitions)
        self._seek(self.resume, first=True)

    @classmethod
    def from_settings(
        cls,
        settings: K2Settings,
        *,
        config: IngestConfig = IngestConfig(),
        catalog: Catalog | None = None,
        registry: CollectorRegistry | None = None,
        stages: Stages | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> IngestPipeline:
        """The real collaborators: Kafka consumer and DLQ producer, the Iceberg table."""
        from k2lib.ingestion.consumer import TradeConsumer
        from k2lib.stack.catalog import load_k2_catalog
        from k2lib.storage.table import ensure_table
        from k2lib.storage.writer import IcebergWriter

        table = ensure_table(catalog or load_k2_catalog(settings), settings.table)
        consumer = TradeConsumer(settings, group_id=config.group_id, partitions=config.partitions)
        writer = IcebergWriter(
            table,
            settings.topic,
            partitions=consumer.partitions,
            topic_id=consumer.topic_id,
            clock=clock,
        )
        return cls(
            source=consumer,
            sink=writer,
            dlq=DeadLetterQueue(settings),
            stages=stages,
            config=config,
            registry=registry,
            clock=clock,
        )

    # -- where to read from -----------------------------------------------------------

    def _seek(self, base: SnapshotOffsets, *, first: bool = False) -> None:
        """Point the consumer at what `base` records for our partitions."""
        topic = self.consumer.topic
        start = dict(base.offsets) if base.topic == topic else {}
        current_id = self.writer.topic_id
        if start and base.topic_id and current_id and current_id != base.topic_id:
            # The broker lost the topic (a memory broker restarted) and it was created
            # again: its offsets restart at 0. Read it all; dedup drops what the table has.
            log.warning(
                "topic %s was recreated on the broker (id %s, the table recorded %s): "
                "reading it again from the beginning",
                topic,
                current_id,
                base.topic_id,
            )
            if first:
                self.consumer.resets.extend(sorted(start))
            start = {}
        if first and base.topic not in (None, topic):
            log.warning(
                "table offsets are for topic %s, not %s: starting from the beginning",
                base.topic,
                topic,
            )
        owned = self.consumer.partitions
        self.next_offsets = {p: o for p, o in start.items() if p in owned}
        self.committed_offsets = dict(self.next_offsets)
        self.consumer.assign(start)

    def rewind(self, reason: str) -> None:
        """Drop everything not committed and start again from what the table records."""
        self._reap(block=True, rewinding=True)
        dropped = self.buffered_rows
        self.buffer, self.buffered_rows = [], 0
        self.stages.discard()
        base = self.writer.rebase()
        self.stages.resync()
        self.resume = base
        self._seek(base)
        self.counts.rewinds += 1
        self.counts.rewind_reasons[reason] = self.counts.rewind_reasons.get(reason, 0) + 1
        self.metrics.rewinds.inc()
        log.warning("rewound to the table (%s): %d buffered rows dropped", reason, dropped)

    # -- one poll -----------------------------------------------------------------------

    def step(self, max_messages: int | None = None) -> int:
        """Poll once and process it. Returns the number of messages polled."""
        plan = self.stages.before_poll(self.consumer.lag())
        for batch in plan.backfill:
            self.accept(batch)
        if not plan.consume:
            self._commit_if_due()
            self.sleep(self.config.poll_timeout_s)
            return 0
        limit = int(self.config.poll_max * plan.batch_size_factor)
        if max_messages is not None:
            limit = min(limit, max_messages)
        poll = self.consumer.poll(max(1, limit), self.config.poll_timeout_s)
        for p in poll.reset_partitions:
            self.next_offsets[p] = 0
        if not len(poll):
            # Idle: what is buffered is all there is for now, so commit it without waiting
            # for the interval (a run that ends on idle leaves nothing behind).
            self._commit_if_due(force=self._uncommitted())
            self.stages.after_step(0.0)
            return 0
        started = self.clock()
        self.counts.consumed += len(poll)
        self.metrics.consumed.inc(len(poll))
        decoded = decode_batch(poll.values)
        if decoded.rejects:
            idx = [r.index for r in decoded.rejects]
            self.dlq.send(
                decoded.rejects, poll.partitions[idx].tolist(), poll.offsets[idx].tolist()
            )
            self.counts.dlq += len(idx)
            self.metrics.dlq.inc(len(idx))
            for r in decoded.rejects:
                self.counts.dlq_reasons[r.reason] = self.counts.dlq_reasons.get(r.reason, 0) + 1
        batch = decoded.batch.with_kafka(
            poll.partitions[decoded.index], poll.offsets[decoded.index]
        )
        self._advance_offsets(poll.partitions, poll.offsets)
        kept = self.stages.process(batch)
        self.metrics.duplicates.inc(self.stages.take_dropped())
        self.accept(kept)
        self.metrics.batch_seconds.observe(self.clock() - started)
        self._observe_rate(len(poll))
        self._commit_if_due(interval_factor=plan.commit_interval_factor)
        self.stages.after_step(self.clock() - started)
        return len(poll)

    def accept(self, batch: TradeBatch) -> None:
        """Buffer records for the next commit."""
        if len(batch):
            self.buffer.append(batch)
            self.buffered_rows += len(batch)

    def _advance_offsets(self, partitions: np.ndarray, offsets: np.ndarray) -> None:
        for p in np.unique(partitions).tolist():
            self.next_offsets[p] = int(offsets[partitions == p].max()) + 1

    def _observe_rate(self, n: int) -> None:
        since, count = self._rate_window
        now = self.clock()
        count += n
        if now - since >= 1.0:
            self.metrics.rate.set(count / (now - since))
            since, count = now, 0
        self._rate_window = (since, count)

    def _commit_if_due(self, *, force: bool = False, interval_factor: float = 1.0) -> None:
        self._reap(block=False)
        due_rows = self.buffered_rows >= self.config.commit_rows
        elapsed = self.clock() - self.last_commit
        due_time = elapsed >= self.config.commit_interval_s * interval_factor
        if force or due_rows or (due_time and self._uncommitted()):
            self.commit()

    def _uncommitted(self) -> bool:
        target = self._inflight.offsets if self._inflight else self.committed_offsets
        return bool(self.buffer) or self.next_offsets != target

    def commit(self) -> None:
        """Hand the buffer to the committer thread; the next poll overlaps the write.

        Order per commit: the Redis state verified -> DLQ delivery confirmed -> rows and
        offsets in one compare-and-set snapshot -> (back on this thread) dedup keys
        recorded, spill acked, group offsets. At most one commit is in flight, so the
        hooks run in commit order."""
        self._reap(block=True)
        if not self._uncommitted():
            return  # a rewind in the reap dropped the buffer
        verified = self.stages.verify_state()
        if verified is False:
            self.rewind("redis state changed")
            return
        try:
            if verified is None:
                raise ServiceError("the Redis state cannot be verified right now")
            self.dlq.flush()
        except ServiceError as exc:
            log.warning("commit postponed: %s", exc)
            self.counts.failed_commits += 1
            self.metrics.commit_failures.inc()
            self.last_commit = self.clock()
            return
        change = self.consumer.topic_recreated()
        batches, offsets = self.buffer, dict(self.next_offsets)
        ticket = self.stages.prepare_commit()
        self.buffer, self.buffered_rows = [], 0
        future = self._committer.submit(self._write, batches, offsets, ticket.properties)
        self._inflight = _InFlight(future, batches, offsets, ticket)
        self.last_commit = self.clock()
        if change is not None:
            # The broker's log under us was replaced (wiped, recreated, trimmed): what is
            # buffered came from the old log and is committed under it; then read the new
            # log from its beginning. The dedup drops what the table already holds.
            self._reap(block=True)
            log.warning("topic %s changed on the broker: %s", self.consumer.topic, change)
            self.consumer.rewind(change)
            for p in change.partitions:
                self.next_offsets[p] = 0
            self.writer.topic_id = self.consumer.topic_id

    def flush(self) -> bool:
        """Commit what is buffered and wait for it. True when nothing consumed is left
        uncommitted (a fenced commit rewinds: its records are read again, not lost)."""
        if self._uncommitted():
            self.commit()
        self._reap(block=True)
        return not self._uncommitted()

    def _write(
        self, batches: list[TradeBatch], offsets: dict[int, int], properties: dict[str, str]
    ) -> CommitResult:
        rows = TradeBatch.concat(batches)
        return self.stages.guard_commit(
            lambda: self.writer.commit(rows, offsets, extra_properties=properties)
        )

    def _reap(self, *, block: bool, rewinding: bool = False) -> bool:
        """Finish the in-flight commit (if done, or wait when `block`). False if it failed."""
        job = self._inflight
        if job is None or (not block and not job.future.done()):
            return True
        self._inflight = None
        try:
            result = job.future.result()
        except DiskFullError:
            raise  # retrying cannot help; the run ends with a clear error
        except CommitFencedError as exc:
            self.counts.failed_commits += 1
            self.stages.commit_failed(job.ticket)
            if not rewinding:
                log.warning("%s", exc)
                self.rewind("fenced by another writer")
            return False
        except (StorageError, CircuitOpenError) as exc:
            # Rows go back to the front of the buffer; their offsets were never recorded.
            log.warning("commit deferred: %s", exc)
            self.counts.failed_commits += 1
            self.metrics.commit_failures.inc()
            self.buffer = job.batches + self.buffer
            self.buffered_rows = sum(len(b) for b in self.buffer)
            self.stages.commit_failed(job.ticket)
            return False
        self.metrics.commit_seconds.observe(result.seconds)
        self.stages.after_commit(job.ticket, result)
        self.consumer.commit(job.offsets)
        self.counts.written += result.rows
        self.counts.commits += 1
        self.metrics.written.inc(result.rows)
        self.metrics.commits.inc()
        self.metrics.table_rows.set(self.counts.written)
        self.resume = result.offsets
        self.committed_offsets = job.offsets
        run_maintenance(
            self.table,
            self.config.maintenance,
            commits=self.counts.commits,
            skip_optional_work=self.stages.skip_optional_work(),
        )
        return True

    # -- a run --------------------------------------------------------------------------

    def run(
        self,
        *,
        max_messages: int | None = None,
        until_idle_s: float | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> dict[str, Any]:
        """Consume until `max_messages`, or `until_idle_s` without messages, or a signal.

        An idle run ends only once everything consumed is committed and nothing waits to be
        backfilled; the summary's `remaining` says what is left, and why, otherwise."""
        started = self.clock()
        previous = _install_stop(self)
        try:
            while True:
                self._consume(max_messages, until_idle_s, progress)
                rewinds = self.counts.rewinds
                self._final_commit()
                if self._stop or self.counts.rewinds == rewinds or self._reached(max_messages):
                    break
                # The last commit rewound (fenced, or Redis lost its state): the records it
                # dropped are still in Kafka, so read them again before ending.
        finally:
            _restore_stop(previous)
            self._committer.shutdown(wait=True)
            self.consumer.close()
        return self.summary(self.clock() - started)

    def _consume(
        self,
        max_messages: int | None,
        until_idle_s: float | None,
        progress: Callable[[int], object] | None,
    ) -> None:
        idle_since: float | None = None
        while not self._stop and not self._reached(max_messages):
            remaining = None if max_messages is None else max_messages - self.counts.consumed
            n = self.step(remaining)
            if progress and n:
                progress(n)
            if n or self.stages.busy() or self._uncommitted():
                idle_since = None
            elif until_idle_s is not None:
                idle_since = idle_since if idle_since is not None else self.clock()
                if self.clock() - idle_since >= until_idle_s:
                    return

    def _reached(self, max_messages: int | None) -> bool:
        return max_messages is not None and self.counts.consumed >= max_messages

    def _final_commit(self) -> None:
        """The run's last commit; a dependency that stays down ends the run with an error."""
        attempts = self.config.final_commit_attempts
        for _ in range(attempts):
            if self.flush():
                return
            self.sleep(1.0)
        raise StorageError(
            f"could not commit the final batch after {attempts} attempts; "
            "nothing was lost: the next run resumes from the last snapshot"
        )

    def summary(self, elapsed: float) -> dict[str, Any]:
        c = self.counts
        out: dict[str, Any] = {
            "consumed": c.consumed,
            "written": c.written,
            "duplicates": 0,
            "gaps": 0,
            "dlq": c.dlq,
            "dlq_reasons": c.dlq_reasons,
            "commits": c.commits,
            "failed_commits": c.failed_commits,
            "rewinds": c.rewinds,
            "rewind_reasons": c.rewind_reasons,
            "broker_resets": sorted(set(self.consumer.resets)),
            "offsets": {str(p): o for p, o in sorted(self.next_offsets.items())},
            "elapsed_s": round(elapsed, 3),
            "rate_msg_s": round(c.consumed / elapsed, 1) if elapsed > 0 else 0.0,
        }
        out.update(self.stages.summary())
        out["remaining"] = self.stages.remaining()
        return out

    def stop(self) -> None:
        self._stop = True


def _install_stop(pipeline: IngestPipeline) -> Any:
    def handler(signum: int, frame: Any) -> None:
        pipeline.stop()

    try:
        return signal.signal(signal.SIGTERM, handler), signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (a notebook or test thread)
        return None


def _restore_stop(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
