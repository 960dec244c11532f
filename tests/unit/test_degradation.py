"""DegradationManager: thresholds, dwell, no flapping, step-wise recovery, override, table."""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
from collections.abc import Iterable

import pytest

from k2lib.clock import ManualClock
from k2lib.errors import ConfigError
from k2lib.monitoring.metrics import new_registry
from k2lib.resilience import (
    LEVEL_ACTIONS,
    BreakerState,
    DegradationConfig,
    DegradationLevel,
    DegradationListener,
    DegradationManager,
    QueryPriority,
    Signals,
    Thresholds,
    Transition,
    lag_from_stats,
)
from k2lib.resilience.trend import (
    DEFAULT_MAX_DRAIN_S,
    DEFAULT_TREND_MIN_SPAN_S,
    DEFAULT_TREND_WINDOW_S,
    LagTrendConfig,
    LagTrendEstimator,
)

pytestmark = [pytest.mark.unit, pytest.mark.resilience, pytest.mark.phase2]

L = DegradationLevel
DWELL = 10.0


def manager(*, warm: bool = True, **kw: object) -> tuple[DegradationManager, ManualClock]:
    """A manager whose lag trend is already known: a consumer 1 message behind and stuck,
    so the next lag reading counts at once (a stalled consumer does not drain its lag)."""
    clock = ManualClock()
    m = DegradationManager(clock=clock, **kw)  # type: ignore[arg-type]
    if warm:
        m.update(lag(1))
        clock.advance(DEFAULT_TREND_MIN_SPAN_S)
        m.update(lag(1))
        assert m.level is L.NORMAL and m.lag_trend is not None
    return m, clock


def lag(n: int, consumed: int | None = None) -> Signals:
    return Signals(lag_messages=n, consumed_messages=consumed)


def feed(
    m: DegradationManager, clock: ManualClock, lags: Iterable[int], every: float = 0.5
) -> list[DegradationLevel]:
    """One reading per poll, `every` seconds apart; the level after each."""
    levels = []
    for n in lags:
        clock.advance(every)
        levels.append(m.update(lag(n)))
    return levels


RECOVERY_FROM_AGGRESSIVE = [
    (L.AGGRESSIVE, L.GRACEFUL, "recover"),
    (L.GRACEFUL, L.SOFT, "recover"),
    (L.SOFT, L.NORMAL, "recover"),
]


def steps_after_first(
    m: DegradationManager,
) -> list[tuple[DegradationLevel, DegradationLevel, str]]:
    """(from, to, reason) of every transition after the first."""
    return [(t.from_level, t.to_level, t.reason) for t in m.transitions[1:]]


def ramp(start: int, rate: float, seconds: float, every: float = 0.5) -> list[int]:
    """Lag readings moving at `rate` msg/s (negative: draining) for `seconds`."""
    steps = int(seconds / every)
    return [max(0, int(start + rate * every * (i + 1))) for i in range(steps)]


def test_enter_threshold_is_inclusive() -> None:
    m, _ = manager()
    assert m.update(lag(49_999)) is L.NORMAL
    assert m.update(lag(50_000)) is L.SOFT  # exactly the enter threshold enters


def test_escalation_jumps_to_the_highest_level_met() -> None:
    m, _ = manager()
    assert m.update(lag(600_000)) is L.AGGRESSIVE
    assert [(t.from_level, t.to_level) for t in m.transitions] == [(L.NORMAL, L.AGGRESSIVE)]
    assert m.transitions[0].signal == "lag_messages"
    assert m.transitions[0].value == 600_000


def test_escalation_waits_for_min_dwell_at_the_current_level() -> None:
    m, clock = manager()
    m.update(lag(60_000))
    assert m.level is L.SOFT
    clock.advance(DWELL - 0.1)
    assert m.update(lag(250_000)) is L.SOFT
    clock.advance(0.1)
    assert m.update(lag(250_000)) is L.GRACEFUL


def test_circuit_break_skips_the_dwell() -> None:
    m, clock = manager()
    m.update(lag(60_000))
    clock.advance(1.0)
    level = m.update(Signals(lag_messages=60_000, breakers={"iceberg_commit": BreakerState.OPEN}))
    assert level is L.CIRCUIT_BREAK
    assert m.transitions[-1].signal == "breaker:iceberg_commit"
    assert m.actions.consume is False


def test_breaker_levels_and_half_open_releases_the_hold() -> None:
    m, clock = manager()
    assert m.update(Signals(breakers={"redis": BreakerState.OPEN})) is L.GRACEFUL
    assert m.update(Signals(breakers={"unknown_dep": BreakerState.OPEN})) is L.GRACEFUL
    clock.advance(DWELL)
    assert m.update(Signals(breakers={"redis": BreakerState.OPEN})) is L.GRACEFUL  # held
    assert m.update(Signals(breakers={"redis": BreakerState.HALF_OPEN})) is L.SOFT


def test_lag_alone_never_reaches_circuit_break() -> None:
    m, clock = manager()
    for _ in range(5):
        m.update(lag(50_000_000))
        clock.advance(DWELL)
    assert m.level is L.AGGRESSIVE  # a paused consumer could never work its lag off


def test_hysteresis_holds_between_exit_and_enter() -> None:
    m, clock = manager()
    m.update(lag(50_000))
    assert m.level is L.SOFT
    # Draining far too slowly to matter (250 msg/s: minutes to go) down to SOFT's exit.
    assert set(feed(m, clock, ramp(50_000, -250, 100))) == {L.SOFT}
    assert set(feed(m, clock, [25_000] * 40)) == {L.SOFT}  # stuck at the exit: held
    assert feed(m, clock, [24_999])[-1] is L.NORMAL


def test_recovery_steps_down_one_level_per_dwell() -> None:
    m, clock = manager()
    m.update(lag(600_000))
    levels = []
    for _ in range(40):  # 1 s per reading, lag gone
        clock.advance(1.0)
        levels.append(m.update(lag(0)))
    assert steps_after_first(m) == RECOVERY_FROM_AGGRESSIVE
    times = [t.at for t in m.transitions]
    assert [b - a for a, b in itertools.pairwise(times)] == [DWELL] * 3
    assert levels[-1] is L.NORMAL


def test_recovery_needs_every_signal_below_the_exit() -> None:
    m, clock = manager()
    m.update(Signals(lag_messages=250_000, batch_latency_s=0.1))
    assert m.level is L.GRACEFUL
    clock.advance(DWELL)
    # lag is fine now, but latency sits at GRACEFUL's exit (1.5 s): still held
    assert m.update(Signals(lag_messages=0, batch_latency_s=1.5)) is L.GRACEFUL
    assert m.update(Signals(lag_messages=0, batch_latency_s=1.49)) is L.SOFT
    assert m.transitions[-1].signal == "batch_latency_s"  # the last one to let go


def test_unmeasured_signals_neither_raise_nor_hold() -> None:
    m, clock = manager()
    m.update(Signals(batch_latency_s=2.0))
    assert m.level is L.SOFT
    clock.advance(DWELL)
    assert m.update(Signals()) is L.NORMAL


def test_rss_is_judged_against_the_budget() -> None:
    budget = 1_000_000
    m, _ = manager(config=DegradationConfig(memory_budget_bytes=budget))
    assert m.update(Signals(rss_bytes=699_999)) is L.NORMAL
    assert m.update(Signals(rss_bytes=700_000)) is L.SOFT
    m2, _ = manager(config=DegradationConfig(memory_budget_bytes=budget))
    assert m2.update(Signals(rss_bytes=970_000)) is L.CIRCUIT_BREAK


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_noisy_signal_around_an_enter_threshold_makes_at_most_one_transition(seed: int) -> None:
    rng = random.Random(seed)
    m, clock = manager()
    for _ in range(2_000):
        clock.advance(rng.uniform(0.05, 2.0))
        m.update(lag(int(rng.uniform(26_000, 74_000))))  # SOFT enter 50k, exit 25k
    assert len(m.transitions) <= 1


def test_signal_hovering_exactly_at_the_threshold_does_not_flap() -> None:
    m, clock = manager()
    for i in range(1_000):
        m.update(lag(199_999 if i % 2 else 200_000))  # GRACEFUL's enter threshold
        clock.advance(1.0)
    assert [t.to_level for t in m.transitions] == [L.GRACEFUL]


def test_force_overrides_and_is_marked_then_releases_gradually() -> None:
    registry = new_registry()
    m, clock = manager(registry=registry)
    m.force(L.AGGRESSIVE)
    assert m.level is L.AGGRESSIVE and m.forced
    assert m.update(lag(0)) is L.AGGRESSIVE  # signals are recorded but do not move it
    assert registry.get_sample_value("k2_degradation_override") == 1
    assert m.status()["forced"] is True
    assert m.transitions[-1].reason == "forced"
    m.force(None)
    assert registry.get_sample_value("k2_degradation_override") == 0
    assert m.update(lag(0)) is L.AGGRESSIVE  # dwell restarted at release
    clock.advance(DWELL)
    assert m.update(lag(0)) is L.GRACEFUL


def test_transitions_are_logged_listened_to_and_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Recorder(DegradationListener):
        def __init__(self) -> None:
            self.seen: list[Transition] = []

        def level_change(self, manager: DegradationManager, transition: Transition) -> None:
            self.seen.append(transition)

    recorder = Recorder()
    m, clock = manager(listeners=[recorder])
    with caplog.at_level(logging.INFO, logger="k2.degradation"):
        m.update(lag(300_000))
        clock.advance(DWELL)
        m.update(lag(0))
    assert [r.name for r in caplog.records] == ["k2.degradation"] * 2
    assert "lag_messages=300000" in caplog.records[0].getMessage()
    assert recorder.seen == m.transitions
    summary = json.loads(json.dumps(m.summary()))
    assert summary["max_level"] == "GRACEFUL"
    assert summary["level"] == "SOFT"
    assert summary["transitions"][0] == {
        "at_s": DEFAULT_TREND_MIN_SPAN_S,
        "from": "NORMAL",
        "to": "GRACEFUL",
        "reason": "escalate",
        "signal": "lag_messages",
        "value": 300_000,
    }
    status = json.loads(json.dumps(m.status()))
    assert status["level"] == "SOFT" and status["signals"]["lag_messages"] == 0
    assert status["actions"]["max_realtime_tier"] == LEVEL_ACTIONS[L.SOFT].max_realtime_tier


def test_metrics_follow_levels_and_signals() -> None:
    registry = new_registry()
    m, clock = manager(registry=registry)
    m.update(Signals(lag_messages=600_000, batch_latency_s=0.25, rss_bytes=123_456))
    clock.advance(DWELL)
    m.update(Signals(lag_messages=0, batch_latency_s=0.5))
    sample = registry.get_sample_value
    assert sample("k2_degradation_level") == int(L.GRACEFUL)
    assert sample("k2_degradation_transitions_total", {"from": "NORMAL", "to": "AGGRESSIVE"}) == 1
    assert sample("k2_degradation_transitions_total", {"from": "AGGRESSIVE", "to": "GRACEFUL"}) == 1
    assert sample("k2_consumer_lag_messages") == 0
    assert sample("k2_batch_latency_seconds") == 0.5
    assert sample("k2_batch_processing_seconds_count") == 2
    assert sample("k2_process_rss_bytes") == 123_456
    assert sample("k2_degradation_override") == 0


def test_thresholds_must_have_hysteresis() -> None:
    with pytest.raises(ConfigError):
        Thresholds(enter=(10, 20, 30, 40), exit=(10, 15, 25, 35))
    with pytest.raises(ConfigError):
        Thresholds(enter=(10, 5, 30, 40), exit=(1, 2, 3, 4))


def test_level_table_is_monotonic_and_ends_in_a_pause() -> None:
    rows = [LEVEL_ACTIONS[level] for level in L]
    assert [r.max_realtime_tier for r in rows] == [3, 3, 2, 1, 0]
    assert [r.max_query_priority for r in rows] == [
        QueryPriority.LOW,
        QueryPriority.LOW,
        QueryPriority.NORMAL,
        QueryPriority.HIGH,
        QueryPriority.HIGH,
    ]
    assert [r.consume for r in rows] == [True, True, True, True, False]
    assert [r.skip_optional_work for r in rows] == [False, True, True, True, True]
    assert rows[L.SOFT].batch_size_factor > 1 and rows[L.SOFT].commit_interval_factor > 1
    assert [r.historical_only for r in rows] == [False, False, False, False, True]
    retry = [r.query_retry_after_s for r in rows]
    assert retry == sorted(retry)


def test_lag_from_librdkafka_stats() -> None:
    stats = {
        "topics": {
            "market.trades": {
                "partitions": {
                    "0": {"consumer_lag": 1200},
                    "1": {"consumer_lag": 300},
                    "2": {"consumer_lag": -1},  # not fetched yet
                    "-1": {"consumer_lag": 99},  # librdkafka's internal partition
                }
            },
            "other": {"partitions": {"0": {"consumer_lag": 5}}},
        }
    }
    assert lag_from_stats(json.dumps(stats), topic="market.trades") == 1500
    assert lag_from_stats(json.dumps(stats)) == 1505
    assert lag_from_stats(json.dumps({"topics": {}})) is None


# -- the lag trend (ADR 010) --------------------------------------------------------------


def test_backlog_draining_fast_is_catch_up_and_stays_normal() -> None:
    registry = new_registry()
    m, clock = manager(warm=False, registry=registry)
    # A run's first poll reads lag 0 (no fetch response yet), then the whole backlog.
    levels = [m.update(lag(0))]
    levels += feed(m, clock, ramp(1_000_000, -100_000, 9.9, every=0.1), every=0.1)
    assert set(levels) == {L.NORMAL}  # 1M behind is 10 s from caught up: not overload
    assert m.transitions == []
    trend = m.lag_trend
    assert trend is not None and trend.lag_rate_msg_s == pytest.approx(-100_000)
    assert trend.seconds_to_drain == pytest.approx(trend.lag / 100_000)
    assert registry.get_sample_value("k2_ingest_lag_seconds_to_drain") == pytest.approx(
        trend.seconds_to_drain
    )
    assert registry.get_sample_value("k2_ingest_lag_rate_messages_per_second") == (
        pytest.approx(-100_000)
    )
    status = json.loads(json.dumps(m.status()))
    assert status["lag_trend"]["shrinking"] is True
    assert status["lag_trend"]["seconds_to_drain"] == pytest.approx(trend.seconds_to_drain, 1e-3)
    assert m.summary()["lag_trend"] == status["lag_trend"]


def test_a_backlog_coming_into_view_partition_by_partition_is_not_growth() -> None:
    m, clock = manager(warm=False)
    m.update(lag(0))
    # Each partition's high watermark arrives with its own fetch response or statistics.
    levels = feed(m, clock, [700_000, 1_500_000, 2_200_000, 3_000_000], every=0.3)
    levels += feed(m, clock, ramp(3_000_000, -100_000, 20.0, every=0.1), every=0.1)
    assert set(levels) == {L.NORMAL} and m.transitions == []
    assert m.lag_trend is not None and m.lag_trend.lag_rate_msg_s == pytest.approx(-100_000)


def test_other_signals_still_apply_while_catching_up() -> None:
    m, clock = manager(warm=False)
    feed(m, clock, ramp(1_000_000, -100_000, 2 * DEFAULT_TREND_MIN_SPAN_S, every=0.1), every=0.1)
    assert m.level is L.NORMAL and m.lag_trend is not None
    still = m.lag_trend.lag - 10_000
    assert m.update(Signals(lag_messages=still, batch_latency_s=3.5)) is L.GRACEFUL
    assert m.transitions[-1].signal == "batch_latency_s"


def test_growing_lag_drives_soft_then_graceful_then_aggressive_one_dwell_apart() -> None:
    m, clock = manager(warm=False)
    m.update(lag(0))
    feed(m, clock, ramp(0, 5_000, 110.0))  # the feed outruns the consumer by 5k msg/s
    changes = [(t.from_level, t.to_level, t.signal) for t in m.transitions]
    assert changes == [
        (L.NORMAL, L.SOFT, "lag_messages"),
        (L.SOFT, L.GRACEFUL, "lag_messages"),
        (L.GRACEFUL, L.AGGRESSIVE, "lag_messages"),
    ]
    times = [t.at for t in m.transitions]
    assert all(b - a >= DWELL for a, b in itertools.pairwise(times))  # min time at level
    assert m.transitions[0].value >= 50_000  # type: ignore[operator]
    assert m.lag_trend is not None and m.lag_trend.seconds_to_drain == math.inf


def test_a_lag_that_stops_shrinking_escalates() -> None:
    registry = new_registry()
    m, clock = manager(warm=False, registry=registry)
    m.update(lag(0))
    draining = feed(m, clock, ramp(1_000_000, -50_000, 6.0, every=0.1), every=0.1)
    assert set(draining) == {L.NORMAL}
    stalled_at = clock()
    assert m.lag_trend is not None
    stuck = feed(m, clock, [m.lag_trend.lag] * int(4 * DEFAULT_TREND_WINDOW_S / 0.5))
    assert stuck[0] is L.NORMAL  # one stuck reading is not yet a stall
    assert stuck[-1] is L.AGGRESSIVE  # ~700k behind and not moving
    escalated = m.transitions[0]
    assert escalated.to_level is L.AGGRESSIVE and escalated.signal == "lag_messages"
    assert escalated.at - stalled_at <= 2 * DEFAULT_TREND_WINDOW_S
    assert registry.get_sample_value("k2_ingest_lag_seconds_to_drain") == math.inf


def test_a_drain_too_slow_for_max_drain_escalates() -> None:
    m, clock = manager(warm=False)
    m.update(lag(0))
    rate = 600_000 / (2 * DEFAULT_MAX_DRAIN_S)  # shrinking, but two minutes from done
    levels = feed(m, clock, ramp(600_000, -rate, 2 * DEFAULT_TREND_MIN_SPAN_S))
    assert levels[0] is L.NORMAL and levels[-1] is L.AGGRESSIVE


def test_lag_holds_by_its_exit_then_recovers_one_step_per_dwell() -> None:
    m, clock = manager(warm=False)
    m.update(lag(0))
    feed(m, clock, [700_000] * int(2 * DEFAULT_TREND_MIN_SPAN_S / 0.5))
    assert m.level is L.AGGRESSIVE
    # The consumer gets going again: above AGGRESSIVE's exit (300k) the level is held.
    held = feed(m, clock, ramp(700_000, -20_000, 19.5))
    assert set(held) == {L.AGGRESSIVE}
    feed(m, clock, ramp(300_000, -20_000, 60.0))  # down to 0, then caught up
    assert steps_after_first(m) == RECOVERY_FROM_AGGRESSIVE
    times = [t.at for t in m.transitions]
    assert all(b - a >= DWELL for a, b in itertools.pairwise(times))


def test_unknown_trend_neither_raises_nor_holds() -> None:
    registry = new_registry()
    m, clock = manager(warm=False, registry=registry)
    assert m.update(lag(600_000)) is L.NORMAL  # one reading: no trend yet
    assert m.lag_trend is None and m.status()["lag_trend"] is None
    assert math.isnan(registry.get_sample_value("k2_ingest_lag_seconds_to_drain") or 0.0)
    clock.advance(DEFAULT_TREND_MIN_SPAN_S)
    assert m.update(lag(600_000)) is L.AGGRESSIVE  # a second later: stuck, so behind


def test_trend_estimator_rates_and_zero_restarts_the_window() -> None:
    est = LagTrendEstimator(LagTrendConfig(window_s=4.0, min_span_s=1.0))  # small numbers
    assert est.observe(0.0, 0) is not None  # caught up is known at once
    assert est.observe(0.5, 1_000_000, consumed=0) is None  # a window of one reading
    for i in range(1, 10):  # consumer 300k msg/s, feed 100k msg/s: lag -200k msg/s
        trend = est.observe(0.5 + i * 0.5, 1_000_000 - 100_000 * i, consumed=150_000 * i)
    assert trend is not None
    assert trend.lag_rate_msg_s == pytest.approx(-200_000)
    assert trend.lag_rate_stderr == pytest.approx(0.0, abs=1e-6)
    assert trend.consume_rate_msg_s == pytest.approx(300_000)
    assert trend.produce_rate_msg_s == pytest.approx(100_000)
    assert trend.span_s <= 4.0 + 0.5  # one reading at or past the window's edge is kept
    assert trend.as_dict()["seconds_to_drain"] == pytest.approx(0.5)  # 100k left
    stuck = est.observe(6.0, 5_000)
    assert stuck is not None and stuck.lag == 5_000
    assert est.observe(6.5, 0) is not None and est.observe(7.0, 10) is None  # restarted
    noisy = LagTrendEstimator()
    rng = random.Random(3)
    for i in range(40):
        last = noisy.observe(i * 0.25, 100_000 + rng.randint(-20_000, 20_000))
    assert last is not None and last.lag_rate_stderr > 0
    assert last.soonest_drain_s(2.0) < last.soonest_drain_s(0.0)  # doubt only speeds it


@pytest.mark.parametrize(
    "kw",
    [{"min_span_s": 0.0}, {"min_span_s": 16.0}, {"min_samples": 1}, {"z": -1.0}],
)
def test_trend_config_rejects_nonsense(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        LagTrendConfig(**kw)  # type: ignore[arg-type]
