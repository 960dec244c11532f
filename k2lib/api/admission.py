"""Which degradation level the API is at, and whether a query may run at it.

The level comes from, in order: a `DegradationManager` in this process; the status the
ingest process publishes to Redis under `K2Settings.status_key` (JSON, refreshed every second),
if it is fresh; otherwise NORMAL, labelled `default`. A stale status is ignored on
purpose: an ingest process that died at CIRCUIT_BREAK must not close the API forever.
What each level allows is read from LEVEL_ACTIONS through the LoadShedder, never decided
here.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from k2lib.clock import Clock
from k2lib.resilience.levels import DegradationLevel, QueryPriority, actions_for
from k2lib.resilience.manager import DegradationManager
from k2lib.resilience.shedder import LoadShedder

__all__ = ["STATUS_KEY", "Decision", "LevelReading", "LevelSource", "decide"]

STATUS_KEY = "k2:market.trades:market.trades:degradation"  # K2Settings().status_key
DEFAULT_MAX_AGE_S = 30.0
DEFAULT_CACHE_S = 1.0


@dataclass(frozen=True, slots=True)
class LevelReading:
    level: DegradationLevel
    source: str  # manager | redis | default
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level.name,
            "level_value": int(self.level),
            "source": self.source,
            "actions": actions_for(self.level).as_dict(),
            **({"status": self.detail} if self.detail else {}),
        }


class LevelSource:
    """`current()` -> LevelReading, cached for `cache_s` so a busy API asks Redis rarely."""

    def __init__(
        self,
        *,
        manager: DegradationManager | None = None,
        redis_factory: Callable[[], Any] | None = None,
        clock: Clock = time.monotonic,
        wall: Callable[[], float] = time.time,
        cache_s: float = DEFAULT_CACHE_S,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        status_key: str = STATUS_KEY,
    ) -> None:
        self.manager = manager
        self.status_key = status_key
        self._redis_factory = redis_factory
        self._redis: Any = None
        self._clock, self._wall = clock, wall
        self._cache_s, self._max_age_s = cache_s, max_age_s
        self._cached: tuple[float, LevelReading] | None = None
        self._lock = threading.Lock()

    def current(self) -> LevelReading:
        if self.manager is not None:
            return LevelReading(self.manager.level, "manager", self.manager.status())
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._cache_s:
                return self._cached[1]
            reading = self._from_redis()
            self._cached = (now, reading)
            return reading

    def _from_redis(self) -> LevelReading:
        if self._redis_factory is None:
            return LevelReading(DegradationLevel.NORMAL, "default")
        try:
            if self._redis is None:
                self._redis = self._redis_factory()
            raw = self._redis.get(self.status_key)
        except Exception as exc:  # Redis down must not take the query API down with it
            return LevelReading(DegradationLevel.NORMAL, "default", {"redis_error": str(exc)})
        if raw is None:
            return LevelReading(DegradationLevel.NORMAL, "default")
        try:
            status = json.loads(raw)
            level = _level(status.get("level_value", status.get("level")))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return LevelReading(DegradationLevel.NORMAL, "default", {"unreadable": str(exc)})
        published = status.get("published_at")
        age = self._wall() - float(published) if published is not None else None
        if age is not None and age > self._max_age_s:
            note = {"stale_level": level.name, "age_s": round(age, 1)}
            return LevelReading(DegradationLevel.NORMAL, "default", note)
        return LevelReading(level, "redis", status)


def _level(value: Any) -> DegradationLevel:
    if isinstance(value, str) and not value.isdigit():
        return DegradationLevel[value.upper()]
    return DegradationLevel(int(value))


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    source: str  # the source to serve (hybrid may become historical)
    retry_after_s: int
    reason: str
    warning: str | None = None


def decide(
    shedder: LoadShedder, priority: QueryPriority, level: DegradationLevel, source: str
) -> Decision:
    """Admit by priority, then by source. A hybrid query at a historical-only level is
    answered from Iceberg with a warning: committed data is still exact, only the tail is
    missing, and the warning says so."""
    by_priority = shedder.admit_query(priority, level)
    if not by_priority.admitted:
        return Decision(False, source, _seconds(by_priority.retry_after_s), by_priority.reason)
    actions = actions_for(level)
    if source in actions.query_sources:
        return Decision(True, source, 0, "admitted")
    if source == "hybrid" and "historical" in actions.query_sources:
        warning = (
            f"served from Iceberg only: the Kafka tail is not queried at {level.name}; "
            "rows newer than the snapshot are missing"
        )
        return Decision(True, "historical", 0, "downgraded", warning)
    refused = shedder.admit_query(priority, level, source)
    return Decision(False, source, _seconds(refused.retry_after_s), refused.reason)


def _seconds(value: float) -> int:
    # Retry-After is whole seconds; never 0, which invites an immediate retry storm.
    return max(1, math.ceil(value))
