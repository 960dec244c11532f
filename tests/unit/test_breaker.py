"""CircuitBreaker: thresholds, volume gate, half-open limits, backoff, listeners, threads."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from k2lib.clock import ManualClock
from k2lib.errors import CircuitOpenError, ConfigError, ValidationError
from k2lib.monitoring.metrics import new_registry
from k2lib.resilience import BreakerConfig, BreakerListener, BreakerState, CircuitBreaker

pytestmark = [pytest.mark.unit, pytest.mark.resilience, pytest.mark.phase2]

CFG = BreakerConfig(
    window_size=10,
    minimum_calls=10,
    failure_rate=0.5,
    slow_call_s=1.0,
    open_s=5.0,
    max_open_s=20.0,
    backoff_factor=2.0,
    half_open_max_calls=2,
    half_open_max_wait_s=3.0,
)


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom("down")


def make(clock: ManualClock, **kw: Any) -> CircuitBreaker:
    return CircuitBreaker("redis", config=CFG, clock=clock, **kw)


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(CFG.window_size):
        breaker.record_failure(Boom())
    assert breaker.state is BreakerState.OPEN


def tripped(**kw: Any) -> tuple[ManualClock, CircuitBreaker]:
    """A breaker just tripped open, and the clock it reads."""
    clock = ManualClock()
    breaker = make(clock, **kw)
    trip(breaker)
    return clock, breaker


def half_open() -> tuple[ManualClock, CircuitBreaker]:
    """A tripped breaker whose open period has just run out."""
    clock, breaker = tripped()
    clock.advance(CFG.open_s)
    assert breaker.state is BreakerState.HALF_OPEN
    return clock, breaker


def test_failure_rate_exactly_at_threshold_trips() -> None:
    breaker = make(ManualClock())
    for _ in range(5):
        breaker.record_success()
    for _ in range(4):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # 9 calls: below the volume gate
    breaker.record_failure()  # 10 calls, 5 failures: rate 0.5 == threshold, and >= trips
    assert breaker.state is BreakerState.OPEN


def test_failure_rate_below_threshold_stays_closed() -> None:
    breaker = make(ManualClock())
    for i in range(50):
        # 4 failures in every 10: 0.4 < 0.5, forever
        if i % 10 < 4:
            breaker.record_failure()
        else:
            breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_minimum_calls_gate_holds_even_at_100_percent_failures() -> None:
    breaker = make(ManualClock())
    for _ in range(CFG.minimum_calls - 1):
        with pytest.raises(Boom):
            breaker.call(fail)
    assert breaker.state is BreakerState.CLOSED
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breaker.state is BreakerState.OPEN


def test_sliding_window_forgets_old_failures() -> None:
    breaker = make(ManualClock())
    for _ in range(4):
        breaker.record_failure()
    for _ in range(10):
        breaker.record_success()  # pushes the 4 failures out of the 10-call window
    for _ in range(4):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # 4/10 in the window, not 8/18


def test_open_fails_fast_without_calling_and_counts_rejections() -> None:
    registry = new_registry()
    clock, breaker = tripped(registry=registry)
    called = []
    clock.advance(2.0)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(called.append, 1)
    assert called == []
    assert info.value.name == "redis"
    assert info.value.retry_after_s == pytest.approx(3.0)
    assert breaker.allow() is False
    sample = registry.get_sample_value
    assert sample("k2_circuit_breaker_rejected_calls_total", {"breaker": "redis"}) == 2
    assert sample("k2_circuit_breaker_failures_total", {"breaker": "redis"}) == 10


def test_half_open_admits_a_bounded_number_of_probes_then_closes() -> None:
    _, breaker = half_open()
    assert breaker.allow() and breaker.allow()
    assert breaker.allow() is False  # only half_open_max_calls probes in flight
    breaker.record_success(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success(0.1)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.trips == 0


def test_half_open_probe_failure_reopens_with_backoff() -> None:
    _, breaker = half_open()
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after_s() == pytest.approx(10.0)  # 5 s * 2 for the second trip


def test_half_open_max_wait_reopens_when_probes_hang() -> None:
    clock, breaker = half_open()
    assert breaker.allow()  # a probe that never reports back
    clock.advance(2.9)
    assert breaker.state is BreakerState.HALF_OPEN
    clock.advance(0.1)
    assert breaker.state is BreakerState.OPEN
    assert breaker.trips == 2


def test_half_open_without_probes_waits_calmly() -> None:
    clock, breaker = tripped()
    clock.advance(500.0)  # nobody called: no max-wait, no extra backoff
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.trips == 1


def test_open_duration_backs_off_exponentially_capped_and_resets_on_close() -> None:
    clock, breaker = tripped()
    durations = [breaker.retry_after_s()]
    for _ in range(4):
        clock.advance(durations[-1])
        breaker.allow()
        breaker.record_failure()
        durations.append(breaker.retry_after_s())
    assert durations == [5.0, 10.0, 20.0, 20.0, 20.0]
    clock.advance(20.0)
    for _ in range(CFG.half_open_max_calls):
        assert breaker.allow()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    trip(breaker)
    assert breaker.retry_after_s() == 5.0


def test_slow_call_counts_as_failure_and_exact_limit_does_not() -> None:
    clock = ManualClock()
    breaker = make(clock)

    def slow(seconds: float) -> str:
        clock.advance(seconds)
        return "ok"

    for _ in range(9):
        assert breaker.call(slow, 1.0) == "ok"  # exactly slow_call_s: not slow
    assert breaker.state is BreakerState.CLOSED
    for _ in range(4):
        assert breaker.call(slow, 1.01) == "ok"  # slow calls still return their result
    assert breaker.state is BreakerState.CLOSED  # 4 slow in the last 10
    breaker.call(slow, 1.01)
    assert breaker.state is BreakerState.OPEN  # 5 in 10 == failure_rate


def test_listeners_see_state_changes_failures_and_successes() -> None:
    class Recorder(BreakerListener):
        def __init__(self) -> None:
            self.events: list[tuple[str, object]] = []

        def state_change(
            self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState
        ) -> None:
            self.events.append(("state", (old.value, new.value)))

        def failure(self, breaker: CircuitBreaker, exc: BaseException | None) -> None:
            self.events.append(("failure", type(exc).__name__))

    recorder = Recorder()
    clock, breaker = tripped(listeners=[recorder])
    clock.advance(5.0)
    breaker.allow()
    breaker.record_success(2.0)  # slow probe: a failure with no exception
    states = [e[1] for e in recorder.events if e[0] == "state"]
    assert states == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]
    assert recorder.events.count(("failure", "Boom")) == 10
    assert ("failure", "NoneType") in recorder.events


def test_state_gauge_is_one_for_the_current_state_only_and_registry_is_shared() -> None:
    clock, registry = ManualClock(), new_registry()
    redis = make(clock, registry=registry)
    commit = CircuitBreaker("iceberg_commit", config=CFG, clock=clock, registry=registry)
    trip(redis)

    def gauge(name: str, state: str) -> float | None:
        return registry.get_sample_value(
            "k2_circuit_breaker_state", {"breaker": name, "state": state}
        )

    assert [gauge("redis", s.value) for s in BreakerState] == [0.0, 1.0, 0.0]
    assert [gauge("iceberg_commit", s.value) for s in BreakerState] == [1.0, 0.0, 0.0]
    clock.advance(5.0)
    assert redis.state is BreakerState.HALF_OPEN
    assert gauge("redis", "half_open") == 1.0 and gauge("redis", "open") == 0.0
    assert commit.state is BreakerState.CLOSED


def test_guard_as_context_manager_and_decorator_and_excluded_errors() -> None:
    breaker = CircuitBreaker(
        "broker", config=BreakerConfig(minimum_calls=1, window_size=1, exclude=(ValidationError,))
    )

    @breaker.guard()
    def bad_input() -> None:
        raise ValidationError("caller's fault")

    with pytest.raises(ValidationError):
        bad_input()
    assert breaker.state is BreakerState.CLOSED  # excluded: counted as a success
    with pytest.raises(Boom), breaker.guard():
        fail()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError), breaker.guard():
        pytest.fail("must not run while open")


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        BreakerConfig(minimum_calls=30, window_size=20)
    with pytest.raises(ConfigError):
        BreakerConfig(failure_rate=0.0)
    with pytest.raises(ConfigError):
        BreakerConfig(open_s=10.0, max_open_s=5.0)


def test_threads_hammering_call_keep_the_books_consistent() -> None:
    clock, registry = ManualClock(), new_registry()
    breaker = CircuitBreaker("redis", config=CFG, clock=clock, registry=registry)
    lock = threading.Lock()
    tally = {"ok": 0, "failed": 0, "rejected": 0}

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(400):
            try:
                breaker.call(fail if rng.random() < 0.6 else (lambda: None))
                key = "ok"
            except Boom:
                key = "failed"
            except CircuitOpenError:
                key = "rejected"
            with lock:
                tally[key] += 1
            if i % 50 == 0:
                clock.advance(1.0)  # lets open -> half-open happen under contention

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(tally.values()) == 8 * 400
    assert tally["rejected"] > 0 and tally["failed"] > 0
    sample = registry.get_sample_value
    assert sample("k2_circuit_breaker_failures_total", {"breaker": "redis"}) == tally["failed"]
    assert (
        sample("k2_circuit_breaker_rejected_calls_total", {"breaker": "redis"}) == tally["rejected"]
    )
    states = [
        sample("k2_circuit_breaker_state", {"breaker": "redis", "state": s.value})
        for s in BreakerState
    ]
    assert sorted(states) == [0.0, 0.0, 1.0]
