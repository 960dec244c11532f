"""The sequence rules on the in-process tracker twin: labelled examples, and hypothesis
streams against the truth. The Redis tracker is compared with it in tests/integration."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from k2lib.errors import ConfigError, ValidationError
from k2lib.ingestion.sequence import (
    BatchClassification,
    Gap,
    SeqLabel,
    SequenceConfig,
)
from k2lib.testing import FaultyStreamSpec, MemorySequenceTracker, faulty_stream
from k2lib.wire.schema import TradeBatch
from tests.helpers import split_at, symbol_trades
from tests.strategies import faulty_specs

pytestmark = [pytest.mark.unit, pytest.mark.scalability, pytest.mark.phase2]

IN, DUP, GAP, LATE, OOO, RESET = list(SeqLabel)
CONFIG = SequenceConfig(reset_jump=10, reset_quiet_us=1_000_000)


def trades(seqs: list[int], *, symbol: str = "BTC", ts: list[int] | None = None) -> TradeBatch:
    return symbol_trades(seqs, ts if ts is not None else [1_000 * s for s in seqs], symbol=symbol)


def labels(result: BatchClassification) -> list[SeqLabel]:
    return [SeqLabel(x) for x in result.labels.tolist()]


@pytest.fixture
def tracker() -> MemorySequenceTracker:
    return MemorySequenceTracker(config=CONFIG)


def test_in_order_duplicate_and_gap(tracker: MemorySequenceTracker) -> None:
    result = tracker.classify_batch(trades([1, 2, 3, 3, 7, 8]))
    assert labels(result) == [IN, IN, IN, DUP, GAP, IN]
    assert result.new_gaps == [Gap("binance", "BTC", 4, 6)]
    assert (result.gaps, result.gap_messages, result.duplicates) == (1, 3, 1)
    assert tracker.open_gaps() == [Gap("binance", "BTC", 4, 6)]


def test_records_of_one_symbol_see_each_other_in_a_batch(tracker: MemorySequenceTracker) -> None:
    assert labels(tracker.classify_batch(trades([5, 5, 6, 5]))) == [IN, DUP, IN, DUP]


def test_swap_within_a_batch_is_out_of_order_not_a_gap(tracker: MemorySequenceTracker) -> None:
    result = tracker.classify_batch(trades([1, 3, 2, 4]))
    assert labels(result) == [IN, IN, OOO, IN]
    assert result.new_gaps == [] and tracker.open_gaps() == []


def test_partly_filled_hole_reports_what_is_left(tracker: MemorySequenceTracker) -> None:
    result = tracker.classify_batch(trades([1, 6, 3]))
    assert labels(result) == [IN, GAP, OOO]
    assert result.new_gaps == [Gap("binance", "BTC", 2, 2), Gap("binance", "BTC", 4, 5)]


def test_gap_filled_by_a_later_batch_is_a_late_fill(tracker: MemorySequenceTracker) -> None:
    tracker.classify_batch(trades([1, 2, 6]))
    result = tracker.classify_batch(trades([4, 4, 3, 7, 5]))
    assert labels(result) == [LATE, DUP, LATE, IN, LATE]
    assert result.late_fills == 3 and tracker.open_gaps() == []


def test_record_below_the_first_extends_the_range(tracker: MemorySequenceTracker) -> None:
    tracker.classify_batch(trades([10, 11]))
    result = tracker.classify_batch(trades([7, 9, 7]))
    assert labels(result) == [OOO, OOO, DUP]
    assert result.new_gaps == [Gap("binance", "BTC", 8, 8)]


def test_reset_needs_a_big_jump_and_a_quiet_period(tracker: MemorySequenceTracker) -> None:
    seqs = [*range(1, 101), 102]
    tracker.classify_batch(trades(seqs, ts=seqs))
    # A big jump at an old timestamp is a duplicate, not a new session.
    assert labels(tracker.classify_batch(trades([50], ts=[50]))) == [DUP]
    quiet = 102 + CONFIG.reset_quiet_us + 1
    result = tracker.classify_batch(trades([1, 2, 2], ts=[quiet, quiet + 1, quiet + 1]))
    assert labels(result) == [RESET, IN, DUP]
    assert result.abandoned_gap_messages == 1  # seq 101 of the old session
    assert tracker.open_gaps() == []


def test_session_boundary_resets(tracker: MemorySequenceTracker) -> None:
    day = 86_400_000_000
    t = MemorySequenceTracker(config=SequenceConfig(session_length_us=day))
    t.classify_batch(trades([500, 501], ts=[day - 2, day - 1]))
    assert labels(t.classify_batch(trades([501], ts=[day - 1]))) == [DUP]
    assert labels(t.classify_batch(trades([1, 2], ts=[day, day + 1]))) == [RESET, IN]


def test_a_kafka_redelivery_is_a_duplicate_and_leaves_the_gaps(
    tracker: MemorySequenceTracker,
) -> None:
    batch = trades([1, 2, 4]).with_kafka(np.zeros(3), np.arange(3))
    tracker.classify_batch(batch)
    assert labels(tracker.classify_batch(batch)) == [DUP, DUP, DUP]
    assert tracker.open_gaps() == [Gap("binance", "BTC", 3, 3)]


def test_deferred_then_backfilled_records_fill_their_gap(
    tracker: MemorySequenceTracker,
) -> None:
    batch = trades(list(range(1, 11))).with_kafka(np.zeros(10), np.arange(10))
    tracker.classify_batch(batch.take(np.r_[0:4, 7:10]))  # offsets 4..6 deferred (shed)
    backfill = tracker.classify_batch(batch.take(np.arange(4, 7)))
    assert labels(backfill) == [LATE, LATE, LATE]
    assert tracker.open_gaps() == []


def test_key_codes_can_be_passed_in(tracker: MemorySequenceTracker) -> None:
    batch = TradeBatch.concat([trades([1, 2]), trades([1, 3], symbol="ETH")])
    result = tracker.classify_batch(batch, key_codes=batch.key_codes())
    assert labels(result) == [IN, IN, IN, GAP]


def test_metrics_are_counted_on_the_injected_registry() -> None:
    registry = CollectorRegistry()
    t = MemorySequenceTracker(config=CONFIG, registry=registry)
    t.classify_batch(trades([1, 1, 4]))
    t.classify_batch(trades([2]))
    value = registry.get_sample_value
    assert value("k2_sequence_gaps_total") == 1
    assert value("k2_sequence_gap_messages_total") == 2
    assert value("k2_sequence_duplicates_total") == 1
    assert value("k2_sequence_late_fills_total") == 1
    assert value("k2_sequence_resets_total") == 0


def test_rejects_values_lua_cannot_hold_exactly(tracker: MemorySequenceTracker) -> None:
    with pytest.raises(ValidationError):
        tracker.classify_batch(trades([2**53]))


def test_config_rejects_negative_thresholds() -> None:
    with pytest.raises(ConfigError):
        SequenceConfig(reset_jump=-1)


def test_empty_batch() -> None:
    result = MemorySequenceTracker().classify_batch(TradeBatch.empty())
    assert result.labels.shape == (0,) and result.new_gaps == []


# -- property tests: any stream, any cut into batches, the totals equal the truth --------


SPECS = faulty_specs(max_keys=3, max_length=60)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=SPECS, seed=st.integers(0, 2**32), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_reported_gaps_and_duplicates_equal_the_truth(
    spec: FaultyStreamSpec, seed: int, cuts: list[int]
) -> None:
    batch, truth = faulty_stream(random.Random(seed), spec)
    tracker = MemorySequenceTracker(config=CONFIG)
    results = [tracker.classify_batch(part) for part in split_at(batch, cuts)]
    assert sum(r.duplicates for r in results) == truth.duplicates
    assert sum(r.resets for r in results) == truth.resets
    assert tracker.open_gaps() == truth.open_gaps
    sessions = np.concatenate([np.zeros(0, np.int64), *(r.sessions for r in results)])
    keys = set(zip(batch.symbol.tolist(), sessions.tolist(), batch.seq.tolist(), strict=True))
    assert len(keys) == truth.unique_records  # sessions tell reused seqs apart
    abandoned = sum(r.abandoned_gap_messages for r in results)
    assert abandoned == truth.abandoned
    still_open = sum(g.size for g in truth.open_gaps)
    reported = sum(r.gap_messages - r.late_fills for r in results)
    assert reported == still_open + abandoned


@settings(max_examples=100, deadline=None)
@given(spec=SPECS, seed=st.integers(0, 2**32), cut=st.integers(0, 10_000), back=st.integers(0, 50))
def test_a_replay_after_a_crash_changes_no_total(
    spec: FaultyStreamSpec, seed: int, cut: int, back: int
) -> None:
    batch, truth = faulty_stream(random.Random(seed), spec)
    cut %= len(batch) + 1
    tracker = MemorySequenceTracker(config=CONFIG)
    head = batch.take(np.arange(0, cut))
    results = [tracker.classify_batch(head)]
    # After a crash the state is synced from the table: `back` committed rows are replayed
    # (as `state.TableStateSync` does), in the sessions they were stored in, then the
    # consumer resumes where the table ends.
    restart = max(0, cut - back)
    before = tracker.summary()
    tracker.replay_committed(head.with_session(results[0].sessions).take(np.arange(restart, cut)))
    assert tracker.summary() == before
    results.append(tracker.classify_batch(batch.take(np.arange(cut, len(batch)))))
    assert sum(r.duplicates for r in results) == truth.duplicates
    assert tracker.open_gaps() == truth.open_gaps


def test_a_reset_begins_a_session_named_by_its_time(tracker: MemorySequenceTracker) -> None:
    first = tracker.classify_batch(trades([1, 2, 3, 20, 21], ts=[10, 11, 12, 13, 14]))
    assert first.sessions.tolist() == [0] * 5
    later = 5_000_000  # quiet for more than reset_quiet_us, and 21 - 1 > reset_jump
    again = tracker.classify_batch(
        trades([1, 2, 2, 3], ts=[later, later + 1, later + 1, later + 2])
    )
    assert labels(again) == [RESET, IN, DUP, IN]
    assert again.sessions.tolist() == [later] * 4
    # The open gap 4..19 of the first session is abandoned, not left open.
    assert again.abandoned_gap_messages == 16 and tracker.open_gaps() == []
    # A record of the new session that is not a reset stays in it.
    fourth = tracker.classify_batch(trades([5], ts=[later + 9]))
    assert labels(fourth) == [GAP] and fourth.sessions.tolist() == [later]


def test_two_resets_of_one_key_in_one_batch_each_name_their_records() -> None:
    tracker = MemorySequenceTracker(config=CONFIG)
    q = 5_000_000
    batch = trades([1, 2, 30, 1, 2, 30, 1, 2], ts=[0, 1, 2, q, q + 1, q + 2, 2 * q, 2 * q + 1])
    result = tracker.classify_batch(batch)
    assert labels(result) == [IN, IN, GAP, RESET, IN, GAP, RESET, IN]
    assert result.sessions.tolist() == [0, 0, 0, q, q, q, 2 * q, 2 * q]


def test_replayed_rows_restore_their_session_and_older_ones_change_nothing() -> None:
    q = 5_000_000
    original = MemorySequenceTracker(config=CONFIG)
    stored = trades([1, 2, 30, 1, 2, 3], ts=[0, 1, 2, q, q + 1, q + 2])
    stored = stored.with_session(original.classify_batch(stored).sessions)
    # Redis lost the state: a fresh tracker replays what the table holds, in any cut.
    rebuilt = MemorySequenceTracker(config=CONFIG)
    rebuilt.replay_committed(stored.take(np.arange(3, 6)))
    rebuilt.replay_committed(stored.take(np.arange(0, 3)))  # the older session: no change
    assert rebuilt.summary() == {}
    after = rebuilt.classify_batch(trades([3, 4], ts=[q + 2, q + 3]))
    assert labels(after) == [DUP, IN]
    assert after.sessions.tolist() == [q, q]


def test_a_late_record_of_the_previous_session_stays_in_it() -> None:
    """Copies of the old session sent after the reset, beyond where the new session got to:
    timed before the quiet period, they are the old session's, not new gaps."""
    tracker = MemorySequenceTracker(config=CONFIG)
    q = 5_000_000
    tracker.classify_batch(trades(list(range(1, 41)), ts=list(range(1, 41))))
    tracker.classify_batch(trades([1, 2, 3], ts=[q, q + 1, q + 2]))
    late = tracker.classify_batch(trades([3, 4, 30, 31], ts=[q + 3, q + 4, 30, 31]))
    assert labels(late) == [DUP, IN, DUP, DUP]  # 3 repeats the new session; 30, 31 the old
    assert late.sessions.tolist() == [q, q, 0, 0]
    assert tracker.open_gaps() == []
    # A run of consecutive seqs that crosses sessions is cut where the time jumps back.
    mixed = tracker.classify_batch(trades([5, 6], ts=[q + 5, 6]))
    assert labels(mixed) == [IN, DUP] and mixed.sessions.tolist() == [q, 0]
    assert tracker.open_gaps() == []
