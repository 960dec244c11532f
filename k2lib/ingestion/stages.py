"""The seams where optional stages plug into the pipeline.

`Stages` is the no-op base (like pybreaker's listeners): the pipeline calls every hook,
and a subclass overrides what it provides. `ResilientStages` (resilient.py) wires the load
shedder, deduplicator, sequence tracker and degradation manager into these hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from k2lib.wire.schema import TradeBatch

if TYPE_CHECKING:
    from k2lib.ingestion.pipeline import IngestPipeline

__all__ = ["CommitTicket", "PollPlan", "Stages"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CommitTicket:
    """Travels with one commit: its extra snapshot properties and the stages' own state."""

    properties: dict[str, str] = field(default_factory=dict)
    state: Any = None


@dataclass(frozen=True, slots=True)
class PollPlan:
    """What the next poll may do (set from the degradation level's actions)."""

    consume: bool = True
    batch_size_factor: float = 1.0
    commit_interval_factor: float = 1.0


class Stages:
    def before_poll(self, pipeline: IngestPipeline) -> PollPlan:
        return PollPlan()

    def process(self, pipeline: IngestPipeline, batch: TradeBatch) -> TradeBatch:
        """Valid records in; the records to store out."""
        return batch

    def guard_commit(self, commit: Callable[[], T]) -> T:
        return commit()

    def prepare_commit(self, pipeline: IngestPipeline) -> CommitTicket:
        """What this commit carries beyond rows (snapshot properties, state to settle)."""
        return CommitTicket()

    def after_commit(self, pipeline: IngestPipeline, ticket: CommitTicket) -> None:
        """Runs once the snapshot is durable (record dedup keys, ack spills)."""

    def commit_failed(self, pipeline: IngestPipeline, ticket: CommitTicket) -> None:
        """The rows went back to the buffer; give back what `prepare_commit` took."""

    def after_step(self, pipeline: IngestPipeline, seconds: float) -> None:
        """Feed signals (lag, latency, memory) to whoever watches them."""

    def busy(self, pipeline: IngestPipeline) -> bool:
        """True while work remains that is not in Kafka (a spill to backfill)."""
        return False

    def drain(self, pipeline: IngestPipeline) -> None:
        """Before the final commit of a run."""

    def summary(self, pipeline: IngestPipeline) -> dict[str, Any]:
        return {}
