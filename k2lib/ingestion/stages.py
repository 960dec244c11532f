"""The seams where optional stages plug into the pipeline.

`Stages` is the no-op base (like pybreaker's listeners): the pipeline calls every hook,
and a subclass overrides what it provides. `ResilientStages` (resilient.py) wires the load
shedder, deduplicator, sequence tracker and degradation manager into these hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from k2lib.wire.schema import TradeBatch

if TYPE_CHECKING:
    from k2lib.ingestion.pipeline import IngestPipeline

__all__ = ["PollPlan", "Stages"]

T = TypeVar("T")


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

    def commit_properties(self, pipeline: IngestPipeline) -> dict[str, str]:
        return {}

    def after_commit(self, pipeline: IngestPipeline) -> None:
        """Runs once the snapshot is durable (record dedup keys, ack spills)."""

    def after_step(self, pipeline: IngestPipeline, seconds: float) -> None:
        """Feed signals (lag, latency, memory) to whoever watches them."""

    def busy(self, pipeline: IngestPipeline) -> bool:
        """True while work remains that is not in Kafka (a spill to backfill)."""
        return False

    def drain(self, pipeline: IngestPipeline) -> None:
        """Before the final commit of a run."""

    def summary(self, pipeline: IngestPipeline) -> dict[str, Any]:
        return {}
