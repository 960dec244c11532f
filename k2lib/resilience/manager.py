"""Turns signals (lag, batch latency, RSS, breaker states) into one DegradationLevel.

The rules, chosen so that the level cannot flap:

- Enter is `>=`: a signal exactly at a level's enter threshold enters it. A level is held
  while any signal is `>=` that level's exit threshold, and exit < enter (hysteresis).
- Escalation jumps straight to the highest level any signal enters, once the current level
  has lasted `min_dwell_s`. CIRCUIT_BREAK skips the dwell (`circuit_break_immediate`): the
  dependency is already failing, and every second spent writing into it is wasted work.
- Recovery steps down one level at a time, each step needing every signal below the
  current level's exit thresholds and `min_dwell_s` at the current level.
- An open breaker enters its level from `breaker_levels` and holds it until the breaker
  leaves OPEN. HALF_OPEN counts as not open, so the pipeline resumes and its own calls
  become the probes that close the breaker; a failed probe re-opens it and we return.
- Lag and latency never drive CIRCUIT_BREAK by default: that level stops consumption, and a
  paused consumer can only watch its lag grow, so it could never recover.
- Lag acts through its trend (ADR 010): it enters a level only when the backlog is growing
  or would take longer than `trend.max_drain_s` to drain, judged at the optimistic end of
  the estimate. A large lag that shrinks fast is a consumer catching up, not overload: it
  keeps NORMAL. Once a level is entered, the lag holds it by its exit threshold as before
  (hysteresis). Until the trend is known, the lag neither raises nor holds.
- `force(level)` overrides everything (for the demo) and is shown by `k2_degradation_override`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from k2lib.clock import Clock
from k2lib.errors import ConfigError
from k2lib.resilience.breaker import BreakerState
from k2lib.resilience.levels import DegradationLevel, LevelActions, actions_for
from k2lib.resilience.signals import (
    DEFAULT_LAG,
    DEFAULT_LATENCY_S,
    DEFAULT_RSS_FRACTION,
    INF,
    Signals,
    Thresholds,
)
from k2lib.resilience.trend import DEFAULT_LAG_TREND, LagTrend, LagTrendConfig, LagTrendEstimator

__all__ = [
    "DegradationConfig",
    "DegradationListener",
    "DegradationManager",
    "Transition",
]

log = logging.getLogger("k2.degradation")

L = DegradationLevel
DEFAULT_MEMORY_BUDGET_BYTES = 2 * 1024**3
DEFAULT_MIN_DWELL_S = 10.0
DEFAULT_MAX_TRANSITIONS = 1000
# Without the commit or the broker nothing can be written, so stop. Without Redis the
# pipeline can still write Bloom-negative records but must defer dedup confirmation and
# sequence checks, so it sheds the lowest tier to keep that backlog small.
DEFAULT_BREAKER_LEVELS: Mapping[str, DegradationLevel] = MappingProxyType(
    {"iceberg_commit": L.CIRCUIT_BREAK, "broker": L.CIRCUIT_BREAK, "redis": L.GRACEFUL}
)


@dataclass(frozen=True, kw_only=True)
class DegradationConfig:
    """Thresholds and timing; every default is a module constant (see signals.py for the
    signal thresholds: lag, latency and RSS as a fraction of `memory_budget_bytes`, and
    trend.py for when the lag trend lets the lag thresholds act)."""

    lag: Thresholds = DEFAULT_LAG
    trend: LagTrendConfig = DEFAULT_LAG_TREND
    latency: Thresholds = DEFAULT_LATENCY_S
    rss: Thresholds = DEFAULT_RSS_FRACTION
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES
    breaker_levels: Mapping[str, DegradationLevel] = field(
        default_factory=lambda: DEFAULT_BREAKER_LEVELS
    )
    unknown_breaker_level: DegradationLevel = L.SOFT
    min_dwell_s: float = DEFAULT_MIN_DWELL_S
    circuit_break_immediate: bool = True
    max_transitions: int = DEFAULT_MAX_TRANSITIONS

    def __post_init__(self) -> None:
        if self.memory_budget_bytes <= 0 or self.min_dwell_s < 0:
            raise ConfigError("memory_budget_bytes must be > 0 and min_dwell_s >= 0")


@dataclass(frozen=True, kw_only=True)
class Transition:
    at: float
    from_level: DegradationLevel
    to_level: DegradationLevel
    reason: str
    signal: str
    value: float | str

    def as_dict(self, origin: float = 0.0) -> dict[str, Any]:
        return {
            "at_s": round(self.at - origin, 3),
            "from": self.from_level.name,
            "to": self.to_level.name,
            "reason": self.reason,
            "signal": self.signal,
            "value": self.value,
        }


class DegradationListener:
    """Override `level_change`. Called under the manager's lock, so keep it quick."""

    def level_change(self, manager: DegradationManager, transition: Transition) -> None:
        """The level moved; `transition` says from where, to where and why."""


@dataclass(frozen=True)
class _Reading:
    signal: str
    value: float | str
    enters: DegradationLevel
    holds: bool  # keeps the current level up
    closeness: float = 0.0  # value / exit threshold: names what recovered last


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.level = Gauge("k2_degradation_level", "Current level, 0 NORMAL .. 4", registry=r)
        self.transitions = Counter(
            "k2_degradation_transitions", "Level changes", ["from", "to"], registry=r
        )
        for a in DegradationLevel:  # every possible change at 0, not absent until it happens
            for b in DegradationLevel:
                if a is not b:
                    self.transitions.labels(a.name, b.name)
        self.override = Gauge("k2_degradation_override", "1 while forced by hand", registry=r)
        self.lag = Gauge("k2_consumer_lag_messages", "Consumer lag, messages", registry=r)
        self.drain = Gauge(
            "k2_ingest_lag_seconds_to_drain",
            "Estimated seconds until the lag is gone (+Inf: not shrinking, NaN: not known yet)",
            registry=r,
        )
        self.lag_rate = Gauge(
            "k2_ingest_lag_rate_messages_per_second",
            "Least-squares slope of the lag (negative: catching up; NaN: not known yet)",
            registry=r,
        )
        self.latency = Gauge("k2_batch_latency_seconds", "Last batch's latency", registry=r)
        self.batch = Histogram("k2_batch_processing_seconds", "Batch latency", registry=r)
        self.rss = Gauge("k2_process_rss_bytes", "This process's RSS", registry=r)
        self.budget = Gauge("k2_process_rss_budget_bytes", "The RSS budget", registry=r)


class DegradationManager:
    """Call `update(signals)` once per batch; read `level` / `actions` anywhere. Thread-safe."""

    def __init__(
        self,
        *,
        config: DegradationConfig | None = None,
        clock: Clock = time.monotonic,
        registry: CollectorRegistry | None = None,
        listeners: Sequence[DegradationListener] = (),
    ) -> None:
        self.config = config or DegradationConfig()
        self._clock = clock
        self._lock = threading.RLock()
        self._listeners = list(listeners)
        self._started = clock()
        self._level = L.NORMAL
        self._max_level = L.NORMAL
        self._changed_at: float | None = None  # None: no change yet, so no dwell to wait out
        self._forced: DegradationLevel | None = None
        self._signals = Signals()
        self._trend = LagTrendEstimator(self.config.trend)
        self._transitions: deque[Transition] = deque(maxlen=self.config.max_transitions)
        self._metrics = _Metrics(registry) if registry is not None else None
        if self._metrics is not None:
            self._metrics.level.set(0)
            self._metrics.override.set(0)
            self._metrics.budget.set(self.config.memory_budget_bytes)
            self._metrics.drain.set(math.nan)
            self._metrics.lag_rate.set(math.nan)

    @property
    def level(self) -> DegradationLevel:
        return self._level

    @property
    def actions(self) -> LevelActions:
        return actions_for(self._level)

    @property
    def forced(self) -> bool:
        return self._forced is not None

    @property
    def lag_trend(self) -> LagTrend | None:
        """The last lag-trend estimate (None until the window is long enough)."""
        return self._trend.latest

    @property
    def transitions(self) -> list[Transition]:
        with self._lock:
            return list(self._transitions)

    def add_listener(self, listener: DegradationListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def update(self, signals: Signals) -> DegradationLevel:
        """Take one reading and return the level to run the next batch at."""
        with self._lock:
            now = self._clock()
            self._signals = signals
            if signals.lag_messages is not None:
                self._trend.observe(now, signals.lag_messages, signals.consumed_messages)
            self._publish_signals(signals)
            if self._forced is not None:
                return self._level
            readings = self._readings(signals)
            dwelt = self._changed_at is None or now - self._changed_at >= self.config.min_dwell_s
            top = max(readings, key=lambda r: r.enters, default=None)
            if top is not None and top.enters > self._level:
                immediate = top.enters is L.CIRCUIT_BREAK and self.config.circuit_break_immediate
                if dwelt or immediate:
                    self._move(top.enters, now, "escalate", top.signal, top.value)
            elif self._level > L.NORMAL and dwelt and not any(r.holds for r in readings):
                last = max(readings, key=lambda r: r.closeness, default=None)
                signal, value = (last.signal, last.value) if last else ("none", 0.0)
                self._move(L(self._level - 1), now, "recover", signal, value)
            return self._level

    def force(self, level: DegradationLevel | None) -> None:
        """Pin the level (demo only); `None` hands control back to the signals.

        Released, the level stays where it was pinned and the dwell restarts, so the
        return to the signals' level is as gradual as any other recovery.
        """
        with self._lock:
            now = self._clock()
            if level is None:
                if self._forced is not None:
                    log.warning("degradation override released at %s", self._level.name)
                    self._forced, self._changed_at = None, now
            else:
                self._forced = L(level)
                if self._forced is not self._level:
                    self._move(self._forced, now, "forced", "override", self._forced.name)
                log.warning("degradation level forced to %s", self._forced.name)
            if self._metrics is not None:
                self._metrics.override.set(1 if self._forced is not None else 0)

    def status(self) -> dict[str, Any]:
        """What the API and notebooks show: JSON-serialisable."""
        with self._lock:
            now = self._clock()
            last = self._transitions[-1] if self._transitions else None
            since = self._started if self._changed_at is None else self._changed_at
            return {
                "level": self._level.name,
                "level_value": int(self._level),
                "forced": self.forced,
                "at_level_s": round(now - since, 3),
                "last_transition": last.as_dict(self._started) if last else None,
                "signals": self._signals.as_dict(),
                "lag_trend": self._trend_dict(),
                "actions": self.actions.as_dict(),
            }

    def summary(self) -> dict[str, Any]:
        """The `degradation` section of the ingest run's JSON summary."""
        with self._lock:
            return {
                "level": self._level.name,
                "max_level": self._max_level.name,
                "forced": self.forced,
                "lag_trend": self._trend_dict(),
                "transitions": [t.as_dict(self._started) for t in self._transitions],
            }

    # -- internals ------------------------------------------------------------------

    def _trend_dict(self) -> dict[str, Any] | None:
        trend = self._trend.latest
        return None if trend is None else trend.as_dict()

    def _lag_reading(self, lag: int) -> _Reading | None:
        """The lag's say, through its trend: None while the trend is not known yet."""
        trend = self._trend.latest
        if trend is None:
            return None
        cfg = self.config
        exit_ = cfg.lag.exit_for(self._level)
        # Only a consumer that is not catching up is overloaded: then the size of its lag
        # says how far to back off. Holding stays on the count, so a noisy trend cannot
        # let a level go and take it again every dwell.
        enters = cfg.lag.entered(lag) if trend.behind(cfg.trend) else L.NORMAL
        holds = lag >= exit_
        closeness = lag / exit_ if 0 < exit_ < INF else 0.0
        return _Reading("lag_messages", lag, enters, holds, closeness)

    def _readings(self, s: Signals) -> list[_Reading]:
        cfg, level = self.config, self._level
        out = []
        for name, state in sorted(s.breakers.items()):
            is_open = state is BreakerState.OPEN
            target = cfg.breaker_levels.get(name, cfg.unknown_breaker_level)
            enters = target if is_open else L.NORMAL
            out.append(
                _Reading(f"breaker:{name}", state.value, enters, is_open and target >= level)
            )
        rss = None if s.rss_bytes is None else s.rss_bytes / cfg.memory_budget_bytes
        if s.lag_messages is not None:
            lag = self._lag_reading(s.lag_messages)
            if lag is not None:
                out.append(lag)
        numeric: list[tuple[str, float | None, Thresholds]] = [
            ("batch_latency_s", s.batch_latency_s, cfg.latency),
            ("rss_fraction", rss, cfg.rss),
        ]
        for name, value, thresholds in numeric:
            if value is None:
                continue
            exit_ = thresholds.exit_for(level)
            closeness = value / exit_ if 0 < exit_ < INF else 0.0
            enters, holds = thresholds.entered(value), value >= exit_
            out.append(_Reading(name, round(value, 4), enters, holds, closeness))
        return out

    def _move(
        self, to: DegradationLevel, now: float, reason: str, signal: str, value: float | str
    ) -> None:
        t = Transition(
            at=now, from_level=self._level, to_level=to, reason=reason, signal=signal, value=value
        )
        self._level, self._changed_at = to, now
        self._max_level = max(self._max_level, to)
        self._transitions.append(t)
        log_at = logging.WARNING if to > t.from_level else logging.INFO
        trend = self._trend.latest if signal == "lag_messages" else None
        log.log(
            log_at,
            "degradation %s -> %s (%s: %s=%s%s)",
            t.from_level.name,
            to.name,
            reason,
            signal,
            value,
            ""
            if trend is None
            else f", lag {trend.lag_rate_msg_s:+,.0f} msg/s, drain {trend.seconds_to_drain:,.1f} s",
        )
        if self._metrics is not None:
            self._metrics.level.set(int(to))
            self._metrics.transitions.labels(t.from_level.name, to.name).inc()
        for listener in self._listeners:
            listener.level_change(self, t)

    def _publish_signals(self, s: Signals) -> None:
        m = self._metrics
        if m is None:
            return
        if s.lag_messages is not None:
            m.lag.set(s.lag_messages)
            trend = self._trend.latest
            m.drain.set(math.nan if trend is None else trend.seconds_to_drain)
            m.lag_rate.set(math.nan if trend is None else trend.lag_rate_msg_s)
        if s.batch_latency_s is not None:
            m.latency.set(s.batch_latency_s)
            m.batch.observe(s.batch_latency_s)
        if s.rss_bytes is not None:
            m.rss.set(s.rss_bytes)
