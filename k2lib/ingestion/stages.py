"""The seams where optional stages plug into the pipeline.

`Stages` is the no-op base (like pybreaker's listeners): the pipeline calls every hook with
narrow arguments, and a subclass overrides what it provides. `ResilientStages`
(resilient.py) wires the load shedder, deduplicator, sequence tracker, degradation manager
and the Redis state's check against the table into these hooks; `SequenceStage` and
`DedupStage` are what it needs of the sequence tracker and the deduplicator.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from pyiceberg.table import Table

from k2lib.storage.writer import CommitResult
from k2lib.wire.schema import TradeBatch

__all__ = ["CommitTicket", "DedupStage", "PollPlan", "SequenceStage", "Stages"]

T = TypeVar("T")


class Classified(Protocol):
    """What the stages read of a classification: each record's session (row order)."""

    @property
    def sessions(self) -> np.ndarray: ...


class SequenceStage(Protocol):
    def classify_batch(self, batch: TradeBatch) -> Classified: ...
    def replay_committed(self, batch: TradeBatch) -> None: ...
    def summary(self) -> dict[str, Any]: ...


class DedupStage(Protocol):
    """Two-phase: `check` drops duplicates and holds new keys as pending; `stage` takes
    the pending keys for one commit; `record` writes them to Redis after that commit."""

    def check(self, batch: TradeBatch) -> np.ndarray: ...
    def stage(self) -> Any: ...
    def record(self, staged: Any) -> Any: ...
    def restage(self, staged: Any) -> None: ...
    def discard(self) -> int: ...
    def replay_committed(self, batch: TradeBatch) -> None: ...
    def warm(self) -> int: ...
    def summary(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class CommitTicket:
    """Travels with one commit: its extra snapshot properties and the stages' own state."""

    properties: dict[str, str] = field(default_factory=dict)
    state: Any = None


@dataclass(frozen=True, slots=True)
class PollPlan:
    """What the next poll may do (set from the degradation level's actions), and deferred
    records to buffer before it (a backfill from the spill, already checked)."""

    consume: bool = True
    batch_size_factor: float = 1.0
    commit_interval_factor: float = 1.0
    backfill: tuple[TradeBatch, ...] = ()


class Stages:
    def start(self, table: Table, partitions: Collection[int]) -> None:
        """Once, before the first poll: the table and the Kafka partitions this process owns."""

    def before_poll(self, lag: int, consumed: int) -> PollPlan:
        """`lag`: messages behind; `consumed`: messages polled so far (the lag trend)."""
        return PollPlan()

    def process(self, batch: TradeBatch) -> TradeBatch:
        """Valid records in; the records to store out."""
        return batch

    def take_dropped(self) -> int:
        """Duplicates dropped since the last call (for the pipeline's own counter)."""
        return 0

    def guard_commit(self, commit: Callable[[], T]) -> T:
        return commit()

    def verify_state(self) -> bool | None:
        """Before a commit: True if the state the buffered rows were checked against still
        holds, False if it was lost (rewind), None if it cannot be told now (wait)."""
        return True

    def prepare_commit(self) -> CommitTicket:
        """What this commit carries beyond rows (snapshot properties, state to settle)."""
        return CommitTicket()

    def after_commit(self, ticket: CommitTicket, result: CommitResult) -> None:
        """Runs once the snapshot is durable (record dedup keys, ack spills)."""

    def commit_failed(self, ticket: CommitTicket) -> None:
        """The commit did not land; give back what `prepare_commit` took."""

    def discard(self) -> None:
        """The pipeline dropped its buffer: forget what was checked and not committed."""

    def resync(self) -> None:
        """After a rewind: bring the stages' state up to what the table now records."""

    def adopt(self, partitions: Collection[int]) -> None:
        """A group gave this process `partitions`: bring their state up to the table."""

    def release(self, partitions: Collection[int]) -> None:
        """A group took `partitions` away."""

    def after_step(self, seconds: float) -> None:
        """Feed signals (latency) to whoever watches them."""

    def busy(self) -> bool:
        """True while work remains that is not in Kafka (a spill to backfill)."""
        return False

    def skip_optional_work(self) -> bool:
        """True when the degradation level puts maintenance off."""
        return False

    def summary(self) -> dict[str, Any]:
        return {}

    def remaining(self) -> dict[str, Any]:
        """What a run leaves unfinished, and why (empty when nothing)."""
        return {}
