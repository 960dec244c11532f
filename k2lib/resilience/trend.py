"""Lag trend: is the consumer catching up, and how long until it has? (ADR 010)

A lag of 1M messages says nothing on its own: a consumer that drains 200k msg/s faster
than the feed produces is 5 s from caught up, and shedding its low tiers then only moves
records to the spill and makes the table complete later. Like Burrow, K2 judges the lag
by its trend over a sliding window:

- the slope of lag against time is fitted by least squares over `window_s`; its
  standard error says how far to trust it (a noisy or barely started window is wide);
- `seconds_to_drain = lag / -slope` (inf when the lag is not shrinking);
- a reading of zero lag means caught up: the window restarts after it, so a lag that
  first reads 0 (no fetch response yet) then the whole backlog is not seen as growth;
- while a backlog is still being discovered (`min_span_s` after the window restarted),
  a reading above every earlier one restarts the window again: partitions report their
  high watermarks one fetch response or statistics callback at a time, so the lag of a
  standing backlog climbs in steps before it starts to fall.

With `consumed` totals the window also gives the consume rate, and the produce rate is
consume rate + lag slope (what the feed adds per second).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from k2lib.errors import ConfigError

__all__ = [
    "DEFAULT_LAG_TREND",
    "LagTrend",
    "LagTrendConfig",
    "LagTrendEstimator",
]

INF = math.inf

# Long enough to average over a few Iceberg commits (the loop can wait seconds on one, and
# the lag stands still meanwhile) and the per-fetch steps of the cached high watermark;
# short enough that a consumer which stops shrinking its lag is seen within one window.
DEFAULT_TREND_WINDOW_S = 15.0
# The trend is unknown (and the lag signal neither raises nor holds a level) until the
# window spans this long: a run's first seconds measure the fetcher's and the first
# commit's start-up, not the rate it drains at.
DEFAULT_TREND_MIN_SPAN_S = 5.0
DEFAULT_TREND_MIN_SAMPLES = 2
# Lag may drive the level up only if the backlog would take longer than this to drain.
# A minute behind is what a tier-1 reader of the real-time path can be asked to wait.
DEFAULT_MAX_DRAIN_S = 60.0
# Standard errors of the slope: escalation takes the optimistic end of the estimate
# (the fastest drain the window allows), so a noisy or kinked window does not escalate.
DEFAULT_TREND_Z = 2.0
# Samples kept per window; readings closer together than window / this replace the last.
TREND_MAX_SAMPLES = 128


@dataclass(frozen=True, kw_only=True)
class LagTrendConfig:
    """How the lag trend is estimated and when it lets the lag signal act."""

    window_s: float = DEFAULT_TREND_WINDOW_S
    min_span_s: float = DEFAULT_TREND_MIN_SPAN_S
    min_samples: int = DEFAULT_TREND_MIN_SAMPLES
    max_drain_s: float = DEFAULT_MAX_DRAIN_S
    z: float = DEFAULT_TREND_Z

    def __post_init__(self) -> None:
        if not 0 < self.min_span_s <= self.window_s:
            raise ConfigError(f"need 0 < min_span_s <= window_s, got {self.min_span_s}")
        if self.min_samples < 2:
            raise ConfigError("a slope needs min_samples >= 2")
        if self.max_drain_s < 0 or self.z < 0:
            raise ConfigError("max_drain_s and z must be >= 0")


DEFAULT_LAG_TREND = LagTrendConfig()


def _drain_seconds(lag: float, drain_rate: float) -> float:
    if lag <= 0:
        return 0.0
    return lag / drain_rate if drain_rate > 0 else INF


@dataclass(frozen=True, kw_only=True)
class LagTrend:
    """One estimate. Rates are msg/s; a negative `lag_rate_msg_s` is a shrinking lag."""

    lag: int
    lag_rate_msg_s: float
    lag_rate_stderr: float
    samples: int
    span_s: float
    consume_rate_msg_s: float | None = None

    @property
    def seconds_to_drain(self) -> float:
        """Point estimate: lag / drain rate; inf while the lag is not shrinking."""
        return _drain_seconds(self.lag, -self.lag_rate_msg_s)

    def soonest_drain_s(self, z: float) -> float:
        """Time to drain at the fastest rate within `z` standard errors of the slope."""
        return _drain_seconds(self.lag, -self.lag_rate_msg_s + z * self.lag_rate_stderr)

    def behind(self, config: LagTrendConfig) -> bool:
        """Growing, stuck, or shrinking too slowly even on the most hopeful reading."""
        return self.soonest_drain_s(config.z) > config.max_drain_s

    @property
    def produce_rate_msg_s(self) -> float | None:
        """What the feed adds: consumed per second plus the lag's own growth."""
        if self.consume_rate_msg_s is None:
            return None
        return self.consume_rate_msg_s + self.lag_rate_msg_s

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: an infinite time to drain is shown as None."""
        ttd = self.seconds_to_drain
        produce = self.produce_rate_msg_s
        return {
            "lag": self.lag,
            "lag_rate_msg_s": round(self.lag_rate_msg_s, 1),
            "lag_rate_stderr": round(self.lag_rate_stderr, 1),
            "seconds_to_drain": None if ttd == INF else round(ttd, 3),
            "shrinking": self.lag_rate_msg_s < 0,
            "consume_rate_msg_s": (
                None if self.consume_rate_msg_s is None else round(self.consume_rate_msg_s, 1)
            ),
            "produce_rate_msg_s": None if produce is None else round(produce, 1),
            "samples": self.samples,
            "span_s": round(self.span_s, 3),
        }


def _slope(ts: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope of ys over ts and its standard error (0 with two points)."""
    n = len(ts)
    t_mean = sum(ts) / n
    y_mean = sum(ys) / n
    sxx = sum((t - t_mean) ** 2 for t in ts)
    if sxx <= 0:
        return 0.0, 0.0
    slope = sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys, strict=True)) / sxx
    if n < 3:
        return slope, 0.0
    intercept = y_mean - slope * t_mean
    sse = sum((y - intercept - slope * t) ** 2 for t, y in zip(ts, ys, strict=True))
    return slope, math.sqrt(sse / (n - 2) / sxx)


class LagTrendEstimator:
    """Feed `observe(now, lag, consumed)` once per poll; read the estimate it returns.

    Not thread-safe on its own: the degradation manager calls it under its lock.
    """

    def __init__(self, config: LagTrendConfig = DEFAULT_LAG_TREND) -> None:
        self.config = config
        self._samples: deque[tuple[float, int, int | None]] = deque()
        self._spacing = config.window_s / TREND_MAX_SAMPLES
        self._restarted_at: float | None = None
        self.latest: LagTrend | None = None

    def observe(self, now: float, lag: int, consumed: int | None = None) -> LagTrend | None:
        """Add one reading; the estimate, or None while the window is too short."""
        cfg, samples = self.config, self._samples
        if lag <= 0:
            # Caught up. The next backlog is judged from its own first reading, so a lag
            # that reads 0 before the first fetch response is not taken for growth.
            samples.clear()
            samples.append((now, 0, consumed))
            self._restarted_at = now
            self.latest = LagTrend(
                lag=0, lag_rate_msg_s=0.0, lag_rate_stderr=0.0, samples=1, span_s=0.0
            )
            return self.latest
        if self._restarted_at is None:
            self._restarted_at = now
        if samples and samples[-1][1] == 0:
            samples.clear()
        discovering = now - self._restarted_at < cfg.min_span_s
        if samples and discovering and lag > max(s[1] for s in samples):
            samples.clear()  # more of the standing backlog came into view: not growth
        if samples and (
            now <= samples[-1][0] or (len(samples) >= 2 and now - samples[-2][0] < self._spacing)
        ):
            samples.pop()  # the newest reading always counts; kept ones stay spaced out
        samples.append((now, lag, consumed))
        # Keep one sample at or beyond the window's edge, so sparse readings still span it.
        while len(samples) > 2 and now - samples[1][0] >= cfg.window_s:
            samples.popleft()
        span = now - samples[0][0]
        if len(samples) < cfg.min_samples or span < cfg.min_span_s:
            self.latest = None
            return None
        ts = [s[0] - samples[0][0] for s in samples]
        slope, stderr = _slope(ts, [float(s[1]) for s in samples])
        consume_rate = None
        first_c, last_c = samples[0][2], samples[-1][2]
        if first_c is not None and last_c is not None:
            consume_rate = (last_c - first_c) / span
        self.latest = LagTrend(
            lag=lag,
            lag_rate_msg_s=slope,
            lag_rate_stderr=stderr,
            samples=len(samples),
            span_s=span,
            consume_rate_msg_s=consume_rate,
        )
        return self.latest
