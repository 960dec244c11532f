"""The signals the degradation manager reads, and small helpers to take them.

Lag comes from the consumer's own fetch responses (librdkafka stats `consumer_lag`),
never from ListOffsets, which the local broker gets wrong (see ARCHITECTURE.md).
Memory is this process's RSS, because the process is what the OOM killer ends.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import psutil

from k2lib.errors import ConfigError
from k2lib.resilience.breaker import BreakerState
from k2lib.resilience.levels import DegradationLevel

__all__ = [
    "DEFAULT_LAG",
    "DEFAULT_LATENCY_S",
    "DEFAULT_RSS_FRACTION",
    "ProcessMemory",
    "Signals",
    "Thresholds",
    "breaker_states",
    "lag_from_stats",
]

INF = math.inf


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """Enter and exit values for SOFT, GRACEFUL, AGGRESSIVE, CIRCUIT_BREAK (inf = never)."""

    enter: tuple[float, float, float, float]
    exit: tuple[float, float, float, float]

    def __post_init__(self) -> None:
        if len(self.enter) != 4 or len(self.exit) != 4:
            raise ConfigError("thresholds need one value per level above NORMAL")
        if list(self.enter) != sorted(self.enter):
            raise ConfigError(f"enter thresholds must not decrease: {self.enter}")
        for enter, exit_ in zip(self.enter, self.exit, strict=True):
            if enter != INF and not exit_ < enter:
                raise ConfigError(f"exit must be below enter (hysteresis): {exit_} >= {enter}")

    def entered(self, value: float) -> DegradationLevel:
        """The highest level whose enter threshold `value` meets (>=)."""
        return DegradationLevel(sum(value >= t for t in self.enter))

    def exit_for(self, level: DegradationLevel) -> float:
        return INF if level is DegradationLevel.NORMAL else self.exit[level - 1]


# Defaults for SOFT, GRACEFUL, AGGRESSIVE, CIRCUIT_BREAK, sized for a laptop demo. Lag and
# latency stop at AGGRESSIVE: CIRCUIT_BREAK pauses consumption, which cannot cure either.
# The lag thresholds apply only while the lag trend says the consumer is not catching up.
DEFAULT_LAG = Thresholds(
    enter=(50_000.0, 200_000.0, 500_000.0, INF),
    exit=(25_000.0, 100_000.0, 300_000.0, INF),
)
DEFAULT_LATENCY_S = Thresholds(enter=(1.0, 3.0, 10.0, INF), exit=(0.5, 1.5, 5.0, INF))
# Fractions of the RSS budget. Near the budget, pausing is better than being OOM-killed.
DEFAULT_RSS_FRACTION = Thresholds(enter=(0.70, 0.80, 0.90, 0.97), exit=(0.60, 0.70, 0.80, 0.85))


@dataclass(frozen=True, kw_only=True)
class Signals:
    """One reading. `None` means "not measured this time": it neither raises the level
    nor holds it up (a paused consumer has no batch latency to report).

    The lag acts through its trend (trend.py, ADR 010): only a lag that is growing, or
    shrinking too slowly to drain in time, raises the level."""

    lag_messages: int | None = None
    consumed_messages: int | None = None
    """Messages consumed so far (a running total): gives the lag trend its consume rate."""
    batch_latency_s: float | None = None
    rss_bytes: int | None = None
    breakers: Mapping[str, BreakerState] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return values | {
            "breakers": {name: state.value for name, state in sorted(self.breakers.items())}
        }


class _HasState(Protocol):
    name: str

    @property
    def state(self) -> BreakerState: ...


def breaker_states(breakers: Iterable[_HasState]) -> dict[str, BreakerState]:
    """`{"redis": BreakerState.CLOSED, ...}` for `Signals(breakers=...)`."""
    return {b.name: b.state for b in breakers}


class ProcessMemory:
    """Resident set size of one process (this one by default)."""

    def __init__(self, pid: int | None = None) -> None:
        self._process = psutil.Process(pid)

    def rss_bytes(self) -> int:
        return int(self._process.memory_info().rss)


def lag_from_stats(stats_json: str | bytes, topic: str | None = None) -> int | None:
    """Total consumer lag from a librdkafka statistics callback payload.

    Partitions report -1 until they have fetched, and the internal partition "-1" is not
    a real one; both are skipped. None when no partition has reported yet.
    """
    stats = json.loads(stats_json)
    total, seen = 0, False
    for name, topic_stats in (stats.get("topics") or {}).items():
        if topic is not None and name != topic:
            continue
        for pid, part in (topic_stats.get("partitions") or {}).items():
            lag = part.get("consumer_lag", -1)
            if pid == "-1" or lag is None or lag < 0:
                continue
            total, seen = total + int(lag), True
    return total if seen else None
