"""The ingest pipeline: poll -> decode/validate -> shed -> sequence -> dedup -> Iceberg.

It works a poll at a time on columns, and overlaps each Iceberg commit with the next poll.
Its collaborators sit behind small seams, so the commit ordering can be driven in-process:
a `TradeSource` (the Kafka consumer), a `TableSink` (the compare-and-set Iceberg writer), a
`DeadLetterSink` and the `Stages` (load shedder, deduplicator, sequence tracker, degradation
manager). `IngestPipeline.from_settings` builds the real ones. The commit thread is
`committer.OverlappedCommitter`; a group member's rebalances go to `membership`.

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
import time
from collections.abc import Callable
from typing import Any

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
from k2lib.ingestion.committer import OverlappedCommitter
from k2lib.ingestion.dlq import DeadLetterSink
from k2lib.ingestion.membership import GroupMembership, reader_start
from k2lib.ingestion.metrics import IngestMetrics
from k2lib.ingestion.run import run_until_done
from k2lib.ingestion.seams import (
    IngestConfig,
    IngestCounts,
    TableSink,
    TradeSource,
    default_group,
)
from k2lib.ingestion.stages import Stages
from k2lib.monitoring import new_registry
from k2lib.storage.maintenance import run_maintenance
from k2lib.storage.table import SnapshotOffsets
from k2lib.wire.codec import decode_batch
from k2lib.wire.schema import TradeBatch

__all__ = ["IngestConfig", "IngestPipeline", "TableSink", "TradeSource", "default_group"]

log = logging.getLogger("k2.ingest")


class IngestPipeline:
    def __init__(
        self,
        *,
        source: TradeSource,
        sink: TableSink,
        dlq: DeadLetterSink,
        stages: Stages | None = None,
        config: IngestConfig | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.consumer = source
        self.writer = sink
        self.table = sink.table
        self.dlq = dlq
        self.config = config = config or IngestConfig()
        self.clock = clock
        self.sleep = sleep
        self.registry = registry if registry is not None else new_registry()
        self.metrics = IngestMetrics.create(self.registry)
        self.stages = stages or Stages()
        self.counts = IngestCounts()
        self.buffer: list[TradeBatch] = []
        self.buffered_rows = 0
        self.next_offsets: dict[int, int] = {}
        self.committed_offsets: dict[int, int] = {}
        self.resume = sink.base
        self.last_commit = clock()
        self._stop = False
        self.committer = OverlappedCommitter(sink, self.stages)
        self._rate_window: tuple[float, int] = (clock(), 0)
        self.membership: GroupMembership | None = None
        if config.group:  # partitions arrive with the group's assignment
            self.membership = GroupMembership(self, clock=clock)
            self.writer.release(list(self.writer.partitions))
            self.stages.start(self.table, [])
            self.consumer.subscribe(self.membership)
        else:
            self.stages.start(self.table, self.consumer.partitions)
            self._seek(self.resume, first=True)

    @classmethod
    def from_settings(
        cls,
        settings: K2Settings,
        *,
        config: IngestConfig | None = None,
        catalog: Catalog | None = None,
        registry: CollectorRegistry | None = None,
        stages: Stages | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> IngestPipeline:
        """With the real collaborators: Kafka consumer, DLQ producer, the Iceberg table."""
        from k2lib.ingestion.assemble import build_collaborators

        config = config or IngestConfig()
        source, sink, dlq = build_collaborators(settings, config, catalog=catalog, clock=clock)
        return cls(
            source=source,
            sink=sink,
            dlq=dlq,
            stages=stages,
            config=config,
            registry=registry,
            clock=clock,
        )

    # -- where to read from -----------------------------------------------------------

    def _seek(self, base: SnapshotOffsets, *, first: bool = False) -> None:
        """Point the consumer at what `base` records for our partitions."""
        start = reader_start(base, self.consumer, self.writer, first=first)
        self.next_offsets = dict(start)
        self.committed_offsets = dict(start)
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
        self.counts.rewound(reason)
        self.metrics.rewinds.inc()
        log.warning("rewound to the table (%s): %d buffered rows dropped", reason, dropped)

    # -- one poll -----------------------------------------------------------------------

    def step(self, max_messages: int | None = None) -> int:
        """Poll once and process it. Returns the number of messages polled."""
        plan = self.stages.before_poll(self.consumer.lag(), self.counts.consumed)
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
            self.counts.dead_lettered([r.reason for r in decoded.rejects])
            self.metrics.dlq.inc(len(idx))
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
        elif due_time and self.committer.inflight is None:
            # Idle: nothing to commit, but the Redis state may have been lost meanwhile, and
            # this process's partitions would stay missing from it until its next commit.
            self.last_commit = self.clock()
            if self.stages.verify_state() is False:
                self.rewind("redis state changed")

    def _uncommitted(self) -> bool:
        inflight = self.committer.inflight
        target = inflight.offsets if inflight else self.committed_offsets
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
        self.committer.submit(batches, offsets, ticket)
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

    def _reap(self, *, block: bool, rewinding: bool = False) -> bool:
        """Finish the in-flight commit (if done, or wait when `block`). False if it failed."""
        job = self.committer.take(block=block)
        if job is None:
            return True
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
        run_until_done(self, max_messages, until_idle_s, progress)
        return self.summary(self.clock() - started)

    def summary(self, elapsed: float) -> dict[str, Any]:
        out = self.counts.summary(self.consumer.resets, self.next_offsets, elapsed)
        out.update(self.stages.summary())
        out["remaining"] = self.stages.remaining()
        return out

    def stop(self) -> None:
        self._stop = True

    @property
    def stopped(self) -> bool:
        return self._stop

    @property
    def joined(self) -> bool:
        """False while a group member waits for its first assignment."""
        return self.membership is None or self.membership.joined

    def idle_floor(self) -> float:
        """The time before which an idle poll does not count toward `until_idle_s` (for a
        group member, `GroupMembership.idle_floor`)."""
        return 0.0 if self.membership is None else self.membership.idle_floor()

    def pending_work(self) -> bool:
        """Rows not committed yet, or deferred records still to backfill."""
        return self.stages.busy() or self._uncommitted()

    def close(self) -> None:
        if self.membership is not None:
            self.membership.closing = True  # leaving the group revokes every partition
        self.consumer.close()
        self.committer.shutdown()
