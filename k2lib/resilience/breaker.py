"""A circuit breaker per dependency ("redis", "iceberg_commit", "broker").

The states are small classes with `before_call` / `on_success` / `on_failure`, as in
pybreaker, but time comes from an injected clock so tests never sleep::

    CLOSED    --(>= minimum_calls in the window and failure rate >= threshold)--> OPEN
    OPEN      --(open duration elapsed)-------------------------------------> HALF_OPEN
    HALF_OPEN --(half_open_max_calls probes all succeed)--------------------> CLOSED
    HALF_OPEN --(a probe fails, or probes unfinished after max wait)---------> OPEN

- The window is count-based: the last `window_size` outcomes. The pipeline calls once
  per batch at an irregular pace, so "the last N calls" is a steadier judge than "the
  last N seconds", and it needs no clock reads to expire entries.
- The trip rule is `>=`: a failure rate exactly at the threshold trips.
- A call longer than `slow_call_s` (strictly `>`) counts as a failure even if it returned.
- The open duration is `open_s * backoff_factor ** (trips - 1)`, capped at `max_open_s`;
  `trips` counts consecutive trips and resets when the breaker closes.
- The half-open max wait starts at the first probe: a breaker nobody calls waits calmly
  in HALF_OPEN rather than burning backoff while the pipeline is paused.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge

from k2lib.clock import Clock
from k2lib.errors import CircuitOpenError, ConfigError

__all__ = ["BreakerConfig", "BreakerListener", "BreakerState", "CircuitBreaker"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_WINDOW_SIZE = 20
DEFAULT_MINIMUM_CALLS = 10
DEFAULT_FAILURE_RATE = 0.5
DEFAULT_SLOW_CALL_S = 5.0
DEFAULT_OPEN_S = 5.0
DEFAULT_MAX_OPEN_S = 60.0
DEFAULT_BACKOFF_FACTOR = 2.0
DEFAULT_HALF_OPEN_MAX_CALLS = 3
DEFAULT_HALF_OPEN_MAX_WAIT_S = 30.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, kw_only=True)
class BreakerConfig:
    """Trip and recovery rules. Defaults suit a local dependency called once per batch."""

    window_size: int = DEFAULT_WINDOW_SIZE
    minimum_calls: int = DEFAULT_MINIMUM_CALLS
    failure_rate: float = DEFAULT_FAILURE_RATE
    slow_call_s: float = DEFAULT_SLOW_CALL_S
    open_s: float = DEFAULT_OPEN_S
    max_open_s: float = DEFAULT_MAX_OPEN_S
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR
    half_open_max_calls: int = DEFAULT_HALF_OPEN_MAX_CALLS
    half_open_max_wait_s: float = DEFAULT_HALF_OPEN_MAX_WAIT_S
    exclude: tuple[type[BaseException], ...] = ()
    """Exceptions that are the caller's fault, not the dependency's: they count as success."""

    def __post_init__(self) -> None:
        if not 1 <= self.minimum_calls <= self.window_size:
            raise ConfigError("breaker needs 1 <= minimum_calls <= window_size")
        if not 0.0 < self.failure_rate <= 1.0:
            raise ConfigError("breaker failure_rate must be in (0, 1]")
        if self.half_open_max_calls < 1:
            raise ConfigError("breaker half_open_max_calls must be >= 1")
        if self.open_s <= 0 or self.max_open_s < self.open_s or self.backoff_factor < 1.0:
            raise ConfigError("breaker needs 0 < open_s <= max_open_s and backoff_factor >= 1")

    def open_duration(self, trips: int) -> float:
        return min(self.open_s * self.backoff_factor ** max(trips - 1, 0), self.max_open_s)


class BreakerListener:
    """Override what you need. Called under the breaker's lock, so keep it quick."""

    def state_change(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        """The breaker moved from `old` to `new`."""

    def failure(self, breaker: CircuitBreaker, exc: BaseException | None) -> None:
        """A call failed; `exc` is None for a call that returned but was too slow."""

    def success(self, breaker: CircuitBreaker) -> None:
        """A call succeeded in time."""


class _State:
    """before_call raises CircuitOpenError to refuse; on_* see the calls it admitted."""

    name: BreakerState

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def before_call(self) -> None: ...
    def on_success(self) -> None: ...
    def on_failure(self) -> None: ...


class _Closed(_State):
    name = BreakerState.CLOSED

    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__(breaker)
        self.window: deque[bool] = deque(maxlen=breaker.config.window_size)

    def on_success(self) -> None:
        self.window.append(False)

    def on_failure(self) -> None:
        self.window.append(True)
        cfg, n = self.breaker.config, len(self.window)
        if n >= cfg.minimum_calls and sum(self.window) / n >= cfg.failure_rate:
            self.breaker._trip()


class _Open(_State):
    name = BreakerState.OPEN

    def __init__(self, breaker: CircuitBreaker, duration: float) -> None:
        super().__init__(breaker)
        self.until = breaker._clock() + duration

    def before_call(self) -> None:
        raise CircuitOpenError(self.breaker.name, max(self.until - self.breaker._clock(), 0.0))

    # Outcomes of calls admitted before the trip arrive late; they change nothing.


class _HalfOpen(_State):
    name = BreakerState.HALF_OPEN

    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__(breaker)
        self.admitted = 0
        self.succeeded = 0
        self.first_probe_at: float | None = None

    def before_call(self) -> None:
        cfg = self.breaker.config
        if self.admitted >= cfg.half_open_max_calls:
            raise CircuitOpenError(self.breaker.name, self.time_left())
        if self.first_probe_at is None:
            self.first_probe_at = self.breaker._clock()
        self.admitted += 1

    def on_success(self) -> None:
        self.succeeded += 1
        if self.succeeded >= self.breaker.config.half_open_max_calls:
            self.breaker._close()

    def on_failure(self) -> None:
        self.breaker._trip()

    def time_left(self) -> float:
        if self.first_probe_at is None:
            return 0.0
        wait = self.breaker.config.half_open_max_wait_s
        return max(self.first_probe_at + wait - self.breaker._clock(), 0.0)

    def expired(self) -> bool:
        return self.first_probe_at is not None and self.time_left() <= 0.0


class _BreakerMetrics:
    """One set of collectors per registry, shared by every breaker registered on it."""

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, _BreakerMetrics]] = (
        weakref.WeakKeyDictionary()
    )
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.state = Gauge(
            "k2_circuit_breaker_state",
            "1 for the breaker's current state, 0 for the others",
            ["breaker", "state"],
            registry=registry,
        )
        self.rejected = Counter(
            "k2_circuit_breaker_rejected_calls",
            "Calls refused without trying because the breaker was open",
            ["breaker"],
            registry=registry,
        )
        self.failures = Counter(
            "k2_circuit_breaker_failures",
            "Calls that failed or were slower than slow_call_s",
            ["breaker"],
            registry=registry,
        )

    @classmethod
    def on(cls, registry: CollectorRegistry) -> _BreakerMetrics:
        with cls._lock:
            metrics = cls._by_registry.get(registry)
            if metrics is None:
                metrics = cls._by_registry[registry] = cls(registry)
            return metrics


class CircuitBreaker:
    """Fails fast while a dependency is down. Thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        config: BreakerConfig | None = None,
        clock: Clock = time.monotonic,
        registry: CollectorRegistry | None = None,
        listeners: Sequence[BreakerListener] = (),
    ) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self._clock = clock
        self._lock = threading.RLock()
        self._listeners = list(listeners)
        self._metrics = _BreakerMetrics.on(registry) if registry is not None else None
        if self._metrics is not None:  # this breaker's counters at 0 before its first failure
            self._metrics.failures.labels(name)
            self._metrics.rejected.labels(name)
        self.trips = 0
        self._state: _State = _Closed(self)
        self._publish_state()

    # -- public surface -------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current().name

    def add_listener(self, listener: BreakerListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` through the breaker; raises CircuitOpenError without calling it if open."""
        with self.guard():
            return fn(*args, **kwargs)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """`with breaker.guard(): ...` or `@breaker.guard()`: times the block, records the end."""
        self.before_call()
        start = self._clock()
        try:
            yield
        except Exception as exc:
            if isinstance(exc, self.config.exclude):
                self.record_success(self._clock() - start)
            else:
                self.record_failure(exc)
            raise
        self.record_success(self._clock() - start)

    def before_call(self) -> None:
        """Admit one call or raise CircuitOpenError (counted as rejected)."""
        with self._lock:
            try:
                self._current().before_call()
            except CircuitOpenError:
                if self._metrics is not None:
                    self._metrics.rejected.labels(self.name).inc()
                raise

    def allow(self) -> bool:
        """For batch code that cannot wrap a call: True admits one call, to be followed
        by exactly one `record_success` or `record_failure`."""
        try:
            self.before_call()
        except CircuitOpenError:
            return False
        return True

    def record_success(self, duration_s: float = 0.0) -> None:
        if duration_s > self.config.slow_call_s:
            self._failed(None)
            return
        with self._lock:
            state = self._current()
            for listener in self._listeners:
                listener.success(self)
            state.on_success()

    def record_failure(self, exc: BaseException | None = None) -> None:
        self._failed(exc)

    def retry_after_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 if it would now)."""
        with self._lock:
            state = self._current()
            return max(state.until - self._clock(), 0.0) if isinstance(state, _Open) else 0.0

    # -- transitions (called by the states, under the lock) --------------------------

    def _failed(self, exc: BaseException | None) -> None:
        with self._lock:
            state = self._current()
            if self._metrics is not None:
                self._metrics.failures.labels(self.name).inc()
            for listener in self._listeners:
                listener.failure(self, exc)
            state.on_failure()

    def _current(self) -> _State:
        """Apply the transitions that time alone causes, then return the state."""
        state = self._state
        if isinstance(state, _Open) and self._clock() >= state.until:
            self._move(_HalfOpen(self))
        elif isinstance(state, _HalfOpen) and state.expired():
            self._trip()
        return self._state

    def _trip(self) -> None:
        self.trips += 1
        self._move(_Open(self, self.config.open_duration(self.trips)))

    def _close(self) -> None:
        self.trips = 0
        self._move(_Closed(self))

    def _move(self, new: _State) -> None:
        old = self._state.name
        self._state = new
        self._publish_state()
        for listener in self._listeners:
            listener.state_change(self, old, new.name)

    def _publish_state(self) -> None:
        if self._metrics is None:
            return
        for state in BreakerState:
            value = 1.0 if state is self._state.name else 0.0
            self._metrics.state.labels(self.name, state.value).set(value)
