"""In-process twins of the pipeline's outside services, for unit tests only.

They stand in for Kafka and Redis where a test must drive the commit ordering itself
(poll, in-flight commit, crash, fence) step by step. Integration tests, notebooks and the
demo always run the real services.

- `ListSource`: a topic as lists of message values per partition (`TradeSource`);
- `ListDeadLetters`: a DLQ that keeps what it was sent (`DeadLetterSink`);
- `MemoryStateLedger`: the Redis state ledger (`StateLedger`), whose `wipe` calls back the
  twins that hold the state, as a FLUSHALL would empty them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np

from k2lib.ingestion.consumer import Poll, RebalanceListener
from k2lib.ingestion.state import LedgerView
from k2lib.wire.codec import Reject

__all__ = ["ListDeadLetters", "ListSource", "MemoryStateLedger"]


class ListSource:
    """Messages appended per partition; `poll` hands them out in partition order."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic = topic
        self.partitions = list(range(partitions))
        self.log: dict[int, list[bytes | None]] = {p: [] for p in self.partitions}
        self.positions: dict[int, int] = dict.fromkeys(self.partitions, 0)
        self.resets: list[int] = []
        self.committed: dict[int, int] = {}
        self.topic_id: str | None = None
        self._listener: RebalanceListener | None = None

    def publish(self, partition: int, values: Sequence[bytes | None]) -> None:
        self.log[partition].extend(values)

    def assign(self, start: Mapping[int, int]) -> None:
        self.positions = {p: int(start.get(p, 0)) for p in self.partitions}

    def poll(self, max_messages: int, timeout_s: float) -> Poll:
        values: list[bytes | None] = []
        parts: list[int] = []
        offsets: list[int] = []
        for p in self.partitions:
            at = self.positions[p]
            take = self.log[p][at : at + max_messages - len(values)]
            values.extend(take)
            parts.extend([p] * len(take))
            offsets.extend(range(at, at + len(take)))
            self.positions[p] = at + len(take)
        return Poll(values, np.asarray(parts, np.int32), np.asarray(offsets, np.int64))

    def lag(self) -> int:
        return sum(len(self.log[p]) - self.positions[p] for p in self.partitions)

    def commit(self, offsets: Mapping[int, int]) -> None:
        self.committed.update(offsets)

    def close(self) -> None:
        pass

    def topic_recreated(self) -> None:
        return None

    def rewind(self, change: object) -> None:
        raise AssertionError("a list topic is never recreated")

    def subscribe(self, listener: RebalanceListener) -> None:
        """Join a "group": no partitions until `rebalance` hands some out."""
        self._listener = listener
        self.partitions = []

    def rebalance(self, assigned: Sequence[int] = (), revoked: Sequence[int] = ()) -> None:
        """The group's answer, as the real consumer's callbacks give it: `revoked` leave,
        then `assigned` arrive at the offsets the listener (the pipeline) names."""
        if self._listener is None:
            raise AssertionError("rebalance() needs subscribe() first")
        if revoked:
            self._listener.revoked(list(revoked))
            self.partitions = [p for p in self.partitions if p not in set(revoked)]
        if assigned:
            start = self._listener.assigned(list(assigned))
            self.partitions = sorted(set(self.partitions) | set(assigned))
            self.positions.update({p: int(start.get(p, 0)) for p in assigned})


class ListDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, int]] = []  # reason, partition, offset
        self.queued: list[tuple[str, int, int]] = []
        self.fail_flush = False

    def send(self, rejects: list[Reject], partitions: list[int], offsets: list[int]) -> None:
        self.queued.extend(
            (r.reason, p, o) for r, p, o in zip(rejects, partitions, offsets, strict=True)
        )

    def flush(self) -> None:
        from k2lib.errors import ServiceError

        if self.fail_flush:
            raise ServiceError("DLQ twin: broker refused")
        self.sent.extend(self.queued)
        self.queued = []


class MemoryStateLedger:
    """The ledger's verbs over a dict; `wipe` empties the state holders too."""

    def __init__(self, wipers: Collection[Callable[[], None]] = ()) -> None:
        self.fields: dict[str, str] = {}
        self.wipers = list(wipers)
        self._lock = threading.Lock()
        self._rebuilding: str | None = None

    def read(self) -> LedgerView:
        with self._lock:
            marks = {int(k[2:]): int(v) for k, v in self.fields.items() if k.startswith("p:")}
            return LedgerView(self.fields.get("epoch"), marks)

    def advance(
        self, partitions: Collection[int], sequence_number: int, *, epoch: str | None = None
    ) -> bool:
        with self._lock:
            if epoch and self.fields.get("epoch") != epoch:
                return False
            for p in partitions:
                if int(self.fields.get(f"p:{p}", "-1")) < sequence_number:
                    self.fields[f"p:{p}"] = str(sequence_number)
            return True

    def acquire_rebuild(self, owner: str) -> bool:
        with self._lock:
            if self._rebuilding is None:
                self._rebuilding = owner
                return True
            return False

    def release_rebuild(self, owner: str) -> None:
        with self._lock:
            if self._rebuilding == owner:
                self._rebuilding = None

    def wipe(self) -> int:
        with self._lock:
            n = len(self.fields)
            self.fields = {}
        for wiper in self.wipers:
            wiper()
        return n

    def open_epoch(self, partitions: Collection[int], sequence_number: int) -> str:
        epoch = uuid.uuid4().hex
        self.advance(partitions, sequence_number)
        with self._lock:
            self.fields["epoch"] = epoch
        return epoch
