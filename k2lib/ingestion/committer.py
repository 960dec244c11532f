"""The overlapped commit: at most one Iceberg commit in flight, on its own thread.

The pipeline hands a buffer over and goes on polling; the write (rows and offsets in one
compare-and-set snapshot, through the stages' commit breaker) runs meanwhile. With one
commit in flight at a time, the hooks run after it in commit order.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from k2lib.ingestion.seams import TableSink
from k2lib.ingestion.stages import CommitTicket, Stages
from k2lib.storage.writer import CommitResult
from k2lib.wire.schema import TradeBatch

__all__ = ["InFlight", "OverlappedCommitter"]


@dataclass
class InFlight:
    """One commit handed to the committer thread, with what its outcome needs."""

    future: Future[CommitResult]
    batches: list[TradeBatch]
    offsets: dict[int, int]
    ticket: CommitTicket


class OverlappedCommitter:
    def __init__(self, sink: TableSink, stages: Stages) -> None:
        self.sink = sink
        self.stages = stages
        self.inflight: InFlight | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="k2-commit")

    def submit(
        self, batches: list[TradeBatch], offsets: dict[int, int], ticket: CommitTicket
    ) -> None:
        """Start writing `batches` with `offsets`; the caller has reaped the previous one."""
        assert self.inflight is None, "a commit is already in flight"
        future = self._executor.submit(self._write, batches, offsets, ticket.properties)
        self.inflight = InFlight(future, batches, offsets, ticket)

    def take(self, *, block: bool) -> InFlight | None:
        """Take the in-flight commit: once it is done, or at once when `block` (then its
        `future.result()` waits for the outcome). None when there is none, or it runs on."""
        job = self.inflight
        if job is None or (not block and not job.future.done()):
            return None
        self.inflight = None
        return job

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)

    def _write(
        self, batches: list[TradeBatch], offsets: dict[int, int], properties: dict[str, str]
    ) -> CommitResult:
        rows = TradeBatch.concat(batches)
        return self.stages.guard_commit(
            lambda: self.sink.commit(rows, offsets, extra_properties=properties)
        )
