"""The ingest pipeline: poll -> decode/validate -> shed -> dedup -> sequence -> Iceberg.

It works a poll at a time on columns. Stages that later capabilities provide (the load
shedder, the deduplicator, the sequence tracker, the degradation manager) plug in through
`stages.py`; without them the pipeline still stores every valid record effectively once.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from pyiceberg.catalog import Catalog

from k2lib.config import K2Settings
from k2lib.errors import CircuitOpenError, DiskFullError, StorageError
from k2lib.ingestion.consumer import TradeConsumer
from k2lib.ingestion.dlq import DeadLetterQueue
from k2lib.ingestion.metrics import IngestMetrics
from k2lib.ingestion.stages import CommitTicket, Stages
from k2lib.monitoring import new_registry
from k2lib.stack.catalog import load_k2_catalog
from k2lib.stack.services import topic_id
from k2lib.storage.maintenance import MaintenanceConfig, expire_snapshots
from k2lib.storage.table import SnapshotOffsets, ensure_table, latest_offsets
from k2lib.storage.writer import CommitResult, IcebergWriter
from k2lib.wire.codec import decode_batch
from k2lib.wire.schema import TradeBatch

__all__ = ["IngestConfig", "IngestPipeline"]

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
    duplicates: int = 0
    commits: int = 0
    failed_commits: int = 0
    dlq_reasons: dict[str, int] = field(default_factory=dict)


class IngestPipeline:
    def __init__(
        self,
        settings: K2Settings,
        *,
        config: IngestConfig = IngestConfig(),
        catalog: Catalog | None = None,
        registry: CollectorRegistry | None = None,
        stages: Stages | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.config = config
        self.clock = clock
        self.registry = registry if registry is not None else new_registry()
        self.metrics = IngestMetrics.create(self.registry)
        self.stages = stages or Stages()
        self.table = ensure_table(catalog or load_k2_catalog(settings), settings.table)
        self.writer = IcebergWriter(self.table, settings.topic, clock=clock)
        self.consumer = TradeConsumer(
            settings, group_id=config.group_id, partitions=config.partitions
        )
        self.dlq = DeadLetterQueue(settings)
        self.counts = _Counts()
        self.buffer: list[TradeBatch] = []
        self.buffered_rows = 0
        self.resume = latest_offsets(self.table)
        start = dict(self.resume.offsets) if self.resume.topic == settings.topic else {}
        self.writer.topic_id = current_id = topic_id(settings, settings.topic)
        if start and self.resume.topic_id and current_id and current_id != self.resume.topic_id:
            # The broker lost the topic (a memory broker restarted) and it was created
            # again: its offsets restart at 0. Read it all; dedup drops what the table has.
            log.warning(
                "topic %s was recreated on the broker (id %s, the table recorded %s): "
                "reading it again from the beginning",
                settings.topic,
                current_id,
                self.resume.topic_id,
            )
            self.consumer.resets.extend(sorted(start))
            start = {}
        if self.resume.topic not in (None, settings.topic):
            log.warning(
                "table offsets are for topic %s, not %s: starting from the beginning",
                self.resume.topic,
                settings.topic,
            )
        self.next_offsets: dict[int, int] = {
            p: o for p, o in start.items() if p in self.consumer.partitions
        }
        self.consumer.assign(start)
        self.last_commit = clock()
        self._stop = False
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="k2-commit")
        self._inflight: _InFlight | None = None

    # -- one poll -------------------------------------------------------------------------

    def step(self, max_messages: int | None = None) -> int:
        """Poll once and process it. Returns the number of messages polled."""
        actions = self.stages.before_poll(self)
        if not actions.consume:
            self._commit_if_due()
            time.sleep(self.config.poll_timeout_s)
            return 0
        limit = int(self.config.poll_max * actions.batch_size_factor)
        if max_messages is not None:
            limit = min(limit, max_messages)
        poll = self.consumer.poll(max(1, limit), self.config.poll_timeout_s)
        for p in poll.reset_partitions:
            self.next_offsets[p] = 0
        if not len(poll):
            self._commit_if_due()
            self.stages.after_step(self, 0.0)
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
        self.accept(self.stages.process(self, batch))
        self.metrics.batch_seconds.observe(self.clock() - started)
        self._commit_if_due(interval_factor=actions.commit_interval_factor)
        self.stages.after_step(self, self.clock() - started)
        return len(poll)

    def accept(self, batch: TradeBatch) -> None:
        """Buffer records for the next commit (the stages call this for backfills too)."""
        if len(batch):
            self.buffer.append(batch)
            self.buffered_rows += len(batch)

    def _advance_offsets(self, partitions: np.ndarray, offsets: np.ndarray) -> None:
        for p in np.unique(partitions).tolist():
            self.next_offsets[p] = int(offsets[partitions == p].max()) + 1

    def _commit_if_due(self, *, force: bool = False, interval_factor: float = 1.0) -> None:
        self._reap(block=False)
        due_rows = self.buffered_rows >= self.config.commit_rows
        elapsed = self.clock() - self.last_commit
        due_time = elapsed >= self.config.commit_interval_s * interval_factor
        if force or due_rows or (due_time and self._uncommitted()):
            self.commit()

    def _uncommitted(self) -> bool:
        target = self._inflight.offsets if self._inflight else self.resume.offsets
        return bool(self.buffer) or self.next_offsets != target

    def commit(self) -> None:
        """Hand the buffer to the committer thread; the next poll overlaps the write.

        Order per commit: DLQ flushed -> rows + offsets in one snapshot -> (back on this
        thread) stage hooks such as dedup keys and spill acks -> group offsets. At most one
        commit is in flight, so hooks run in commit order.
        """
        self._reap(block=True)
        self.dlq.flush()
        batches, offsets = self.buffer, dict(self.next_offsets)
        ticket = self.stages.prepare_commit(self)
        self.buffer, self.buffered_rows = [], 0
        future = self._committer.submit(self._write, batches, offsets, ticket.properties)
        self._inflight = _InFlight(future, batches, offsets, ticket)
        self.last_commit = self.clock()

    def flush(self) -> bool:
        """Commit what is buffered and wait for it. False when the commit failed."""
        if self._uncommitted():
            self.commit()
        return self._reap(block=True)

    def _write(
        self, batches: list[TradeBatch], offsets: dict[int, int], properties: dict[str, str]
    ) -> CommitResult:
        rows = TradeBatch.concat(batches)
        return self.stages.guard_commit(
            lambda: self.writer.commit(rows, offsets, extra_properties=properties)
        )

    def _reap(self, *, block: bool) -> bool:
        """Finish the in-flight commit (if done, or wait when `block`). False if it failed."""
        job = self._inflight
        if job is None or (not block and not job.future.done()):
            return True
        self._inflight = None
        try:
            result = job.future.result()
        except DiskFullError:
            raise  # retrying cannot help; the run ends with a clear error
        except (StorageError, CircuitOpenError) as exc:
            # Rows go back to the front of the buffer; their offsets were never recorded.
            log.warning("commit deferred: %s", exc)
            self.counts.failed_commits += 1
            self.buffer = job.batches + self.buffer
            self.buffered_rows = sum(len(b) for b in self.buffer)
            self.stages.commit_failed(self, job.ticket)
            return False
        self.metrics.commit_seconds.observe(result.seconds)
        self.stages.after_commit(self, job.ticket)
        self.consumer.commit(job.offsets)
        self.counts.written += result.rows
        self.counts.commits += 1
        self.metrics.written.inc(result.rows)
        self.metrics.commits.inc()
        self.metrics.table_rows.set(self.counts.written)
        self.resume = SnapshotOffsets(
            snapshot_id=result.snapshot_id, topic=self.settings.topic, offsets=job.offsets
        )
        every = self.config.maintenance.every_commits
        if every and self.counts.commits % every == 0:
            expire_snapshots(self.table, self.config.maintenance.keep_snapshots)
        return True

    # -- a run ----------------------------------------------------------------------------

    def run(
        self,
        *,
        max_messages: int | None = None,
        until_idle_s: float | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> dict[str, Any]:
        """Consume until `max_messages`, or `until_idle_s` without messages, or a signal."""
        started = self.clock()
        idle_since: float | None = None
        previous = _install_stop(self)
        try:
            while not self._stop:
                remaining = None if max_messages is None else max_messages - self.counts.consumed
                if remaining is not None and remaining <= 0:
                    break
                n = self.step(remaining)
                if progress and n:
                    progress(n)
                if n or self.stages.busy(self):
                    idle_since = None
                elif until_idle_s is not None:
                    idle_since = idle_since if idle_since is not None else self.clock()
                    if self.clock() - idle_since >= until_idle_s:
                        break
            self.stages.drain(self)
            self._final_commit()
        finally:
            _restore_stop(previous)
            self._committer.shutdown(wait=True)
            self.consumer.close()
        return self.summary(self.clock() - started)

    def _final_commit(self, attempts: int = 30) -> None:
        """The run's last commit; a dependency that stays down ends the run with an error."""
        for _ in range(attempts):
            if self.flush() and not self._uncommitted():
                return
            time.sleep(1.0)
        raise StorageError(
            f"could not commit the final batch after {attempts} attempts; "
            "nothing was lost: the next run resumes from the last snapshot"
        )

    def summary(self, elapsed: float) -> dict[str, Any]:
        c = self.counts
        out: dict[str, Any] = {
            "consumed": c.consumed,
            "written": c.written,
            "duplicates": c.duplicates,
            "gaps": 0,
            "dlq": c.dlq,
            "dlq_reasons": c.dlq_reasons,
            "commits": c.commits,
            "failed_commits": c.failed_commits,
            "broker_resets": sorted(set(self.consumer.resets)),
            "offsets": {str(p): o for p, o in sorted(self.next_offsets.items())},
            "elapsed_s": round(elapsed, 3),
            "rate_msg_s": round(c.consumed / elapsed, 1) if elapsed > 0 else 0.0,
        }
        out.update(self.stages.summary(self))
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
