"""Degradation levels and what each one does: the single table that the consumer, the load
shedder and the query API all read, so "what does GRACEFUL mean?" has exactly one answer.

Symbol tiers and query priorities share one convention: 1 is the most important, and a
level keeps everything whose number is <= its `max_realtime_tier` / `max_query_priority`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import IntEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "ALL_QUERY_SOURCES",
    "LEVEL_ACTIONS",
    "DegradationLevel",
    "LevelActions",
    "QueryPriority",
    "actions_for",
]

ALL_QUERY_SOURCES = frozenset({"hybrid", "realtime", "historical"})
HISTORICAL_ONLY = frozenset({"historical"})


class DegradationLevel(IntEnum):
    """How far the pipeline has backed off, in increasing severity."""

    NORMAL = 0
    SOFT = 1
    GRACEFUL = 2
    AGGRESSIVE = 3
    CIRCUIT_BREAK = 4


class QueryPriority(IntEnum):
    """A query's importance; HIGH survives the longest."""

    HIGH = 1
    NORMAL = 2
    LOW = 3


@dataclass(frozen=True, kw_only=True)
class LevelActions:
    """What the platform does at one level. Read it; never branch on the level itself."""

    batch_size_factor: float = 1.0
    """Multiply the poll batch size: bigger batches amortise per-batch Redis and commit costs."""
    commit_interval_factor: float = 1.0
    """Multiply the Iceberg commit interval: fewer, larger commits, fewer manifests."""
    skip_optional_work: bool = False
    """Skip work that loses no data if postponed: compaction, snapshot expiry, extra stats."""
    max_realtime_tier: int = 3
    """Symbol tiers 1..max stay on the real-time path; higher tiers are deferred (0 = none)."""
    consume: bool = True
    """False pauses consumption; Kafka keeps the data and offsets stay where they are."""
    backfill_deferred: bool = True
    """Whether to drain the deferred spill back into the table at this level."""
    max_query_priority: QueryPriority = QueryPriority.LOW
    """Queries with priority number <= this are admitted (LOW admits everything)."""
    query_sources: frozenset[str] = ALL_QUERY_SOURCES
    """Query sources the API serves at this level."""
    query_retry_after_s: float = 0.0
    """Retry-After sent with a rejected query; longer where recovery takes longer."""

    @property
    def historical_only(self) -> bool:
        return self.query_sources == HISTORICAL_ONLY

    def admits_tier(self, tier: int) -> bool:
        return tier <= self.max_realtime_tier

    def admits_priority(self, priority: QueryPriority) -> bool:
        return priority <= self.max_query_priority

    def as_dict(self) -> dict[str, Any]:
        """Every field (the priority by name, the sources sorted), and `historical_only`."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return values | {
            "max_query_priority": self.max_query_priority.name,
            "query_sources": sorted(self.query_sources),
            "historical_only": self.historical_only,
        }


# Why each row looks the way it does:
# - SOFT trades latency for throughput (bigger batches, fewer commits) and drops nothing.
# - GRACEFUL defers tier 3 and stops backfilling, so the spill grows instead of the lag;
#   LOW queries are turned away because they compete with the consumer for the broker.
# - AGGRESSIVE keeps only tier 1 and HIGH queries.
# - CIRCUIT_BREAK means a dependency we cannot write without is down: stop consuming
#   (Kafka is the buffer) and serve only what is already committed to Iceberg.
LEVEL_ACTIONS: Mapping[DegradationLevel, LevelActions] = MappingProxyType(
    {
        DegradationLevel.NORMAL: LevelActions(),
        DegradationLevel.SOFT: LevelActions(
            batch_size_factor=2.0,
            commit_interval_factor=2.0,
            skip_optional_work=True,
        ),
        DegradationLevel.GRACEFUL: LevelActions(
            batch_size_factor=2.0,
            commit_interval_factor=4.0,
            skip_optional_work=True,
            max_realtime_tier=2,
            backfill_deferred=False,
            max_query_priority=QueryPriority.NORMAL,
            query_retry_after_s=5.0,
        ),
        DegradationLevel.AGGRESSIVE: LevelActions(
            batch_size_factor=4.0,
            commit_interval_factor=4.0,
            skip_optional_work=True,
            max_realtime_tier=1,
            backfill_deferred=False,
            max_query_priority=QueryPriority.HIGH,
            query_retry_after_s=15.0,
        ),
        DegradationLevel.CIRCUIT_BREAK: LevelActions(
            skip_optional_work=True,
            max_realtime_tier=0,
            consume=False,
            backfill_deferred=False,
            max_query_priority=QueryPriority.HIGH,
            query_sources=HISTORICAL_ONLY,
            query_retry_after_s=30.0,
        ),
    }
)


def actions_for(level: DegradationLevel | int) -> LevelActions:
    """The row of LEVEL_ACTIONS for `level`."""
    return LEVEL_ACTIONS[DegradationLevel(level)]
