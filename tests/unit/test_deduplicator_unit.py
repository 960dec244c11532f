"""The commit-aligned deduplicator's logic over the in-process store twin: within-batch,
pending keys, Bloom tier, rotation, restarts and failures. The Redis tier itself is tested in
tests/integration."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from k2lib.clock import ManualClock
from k2lib.errors import ConfigError, ServiceError, ValidationError
from k2lib.ingestion.dedup import CommitAlignedDeduplicator, DedupConfig
from k2lib.ingestion.dedup.store import StorePlan
from k2lib.testing import MemoryDedupStore
from k2lib.wire.schema import TradeBatch
from tests.helpers import first_occurrences, split_at

pytestmark = [pytest.mark.unit, pytest.mark.scalability, pytest.mark.phase2]

START = 1_700_000_000.0
CONFIG = DedupConfig(window_s=60.0, capacity=10_000)
TINY = DedupConfig(window_s=60.0, capacity=1, error_rate=0.5)  # nearly every key is a "maybe"


def trades(seqs: list[int], symbols: list[str] | None = None, offsets: list[int] | None = None):
    n = len(seqs)
    return TradeBatch.from_columns(
        exchange=["binance"] * n,
        symbol=symbols or ["BTC"] * n,
        seq=seqs,
        exch_ts=seqs,
        recv_ts=seqs,
        price=[1] * n,
        qty=[1] * n,
        partition=None if offsets is None else [0] * n,
        offset=offsets,
    )


def make(
    store: MemoryDedupStore | None = None, config: DedupConfig = CONFIG, **kw
) -> CommitAlignedDeduplicator:
    kw.setdefault("wall_clock", ManualClock(START))
    store = store if store is not None else MemoryDedupStore()
    return CommitAlignedDeduplicator(store, config=config, **kw)


def committed(dedup: CommitAlignedDeduplicator, batch: TradeBatch) -> np.ndarray:
    """`check`, then `record` as the pipeline does once the kept rows are committed."""
    keep = dedup.check(batch)
    dedup.record(dedup.stage())
    return keep


def test_within_batch_keeps_the_first_occurrence() -> None:
    dedup = make()
    keep = dedup.check(trades([1, 2, 2, 1, 3], ["A", "A", "A", "B", "A"]))
    assert keep.tolist() == [True, True, False, True, True]
    assert dedup.summary()["within_batch"] == 1 and dedup.summary()["duplicates"] == 1


def test_the_first_duplicate_in_a_later_batch_is_caught() -> None:
    dedup = make()
    committed(dedup, trades([1, 2, 3]))
    assert dedup.check(trades([3, 4])).tolist() == [False, True]
    totals = dedup.summary()
    assert totals["confirmed"] == 1 and totals["false_positives"] == 0


def test_bloom_false_positives_never_drop_a_real_trade() -> None:
    dedup = make(config=TINY)
    committed(dedup, trades(list(range(0, 2_000, 2))))
    assert dedup.check(trades(list(range(1, 2_000, 2)))).all()  # all new, most look familiar
    assert dedup.summary()["false_positives"] > 500 and dedup.summary()["confirmed"] == 0


def test_keys_are_remembered_for_the_horizon_then_pass_again() -> None:
    clock = ManualClock(START)
    dedup = make(wall_clock=clock)
    committed(dedup, trades([1, 2]))
    clock.advance(CONFIG.window_s)  # still live in the older generation
    assert committed(dedup, trades([1, 5])).tolist() == [False, True]
    clock.advance(2 * CONFIG.window_s)  # both windows left the horizon
    assert dedup.check(trades([1, 2, 5])).all()


def test_warm_loads_the_live_windows_into_a_new_bloom_filter() -> None:
    store = MemoryDedupStore()
    committed(make(store), trades([10, 11, 12], ["A", "A", "B"]))
    restarted = make(store)
    assert restarted.warm() == 3
    calls = store.calls
    assert restarted.check(trades([10, 12, 13], ["A", "B", "B"])).tolist() == [False, False, True]
    assert restarted.summary()["confirmed"] == 2 and store.calls == calls + 1


def test_a_key_recorded_by_another_consumer_is_caught_after_warming() -> None:
    store = MemoryDedupStore()
    committed(make(store), trades([1, 2, 3]))
    other = make(store)
    other.warm()  # the pipeline warms after every partition assignment
    assert other.check(trades([2, 3, 4])).tolist() == [False, False, True]
    assert other.summary()["confirmed"] == 2


def test_a_redelivered_batch_is_dropped_against_the_store() -> None:
    store = MemoryDedupStore()
    batch = trades([1, 2], offsets=[0, 1])
    committed(make(store), batch)
    again = make(store)
    again.warm()
    assert not again.check(batch).any()
    assert not again.check(trades([2, 3], offsets=[0, 1]))[0]  # same offsets, judged by key


def test_a_failing_store_changes_nothing_locally() -> None:
    class FlakyStore(MemoryDedupStore):
        down = False

        def probe(self, plan: StorePlan) -> np.ndarray:
            if self.down:
                raise ServiceError("redis is down")
            return super().probe(plan)

        def record(self, plan: StorePlan) -> int:
            if self.down:
                raise ServiceError("redis is down")
            return super().record(plan)

    store = FlakyStore()
    committed(make(store), trades([1, 2, 3]))
    dedup = make(store)
    dedup.warm()
    store.down = True
    with pytest.raises(ServiceError):
        dedup.check(trades([3, 9]))  # 3 is a Bloom "maybe": the store is asked
    assert dedup.summary()["pending"] == 0 and dedup.summary().get("records", 0) == 0
    store.down = False
    assert dedup.check(trades([3, 9])).tolist() == [False, True]
    staged = dedup.stage()
    store.down = True
    with pytest.raises(ServiceError):
        dedup.record(staged)
    dedup.restage(staged)  # as the pipeline does when Redis failed after the commit
    assert dedup.check(trades([9])).tolist() == [False]
    store.down = False
    dedup.record(dedup.stage())
    assert dedup.summary()["pending"] == 0 and dedup.summary()["recorded"] == 1


def test_metrics_on_the_injected_registry() -> None:
    registry = CollectorRegistry()
    dedup = make(registry=registry)
    committed(dedup, trades([1, 1, 2]))
    committed(dedup, trades([2, 3]))
    value = registry.get_sample_value
    assert value("k2_dedup_records_total") == 5
    assert value("k2_dedup_duplicates_total") == 2
    assert value("k2_dedup_redis_confirmations_total") == 1
    assert value("k2_dedup_bloom_false_positives_total") == 0
    assert value("k2_dedup_bloom_memory_bytes") == dedup.memory_bytes > 0


def test_rejects_negative_seqs_and_bad_config() -> None:
    with pytest.raises(ValidationError):
        make().check(trades([-1]))
    with pytest.raises(ConfigError):
        DedupConfig(generations=1)


def test_empty_batch() -> None:
    dedup = make()
    assert dedup.check(TradeBatch.empty()).shape == (0,)
    assert dedup.record(dedup.stage()) == 0 and dedup.summary().get("duplicates", 0) == 0


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    tiny=st.booleans(),
    cuts=st.lists(st.integers(0, 3_000), max_size=6),
    consumers=st.integers(1, 3),
)
def test_keeps_exactly_the_first_occurrence_of_every_key(
    seed: int, tiny: bool, cuts: list[int], consumers: int
) -> None:
    """Consumers take turns over one store, as partitions move between them: each warms on
    its assignment, and each batch is committed before the next is checked."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3_000))
    symbols = rng.integers(0, 4, n)
    # Mostly ascending seqs with repeats and far jumps (other buckets), as a feed would.
    seqs = np.where(rng.random(n) < 0.05, rng.integers(0, 300_000, n), rng.integers(0, 400, n))
    batch = trades(seqs.tolist(), [f"S{s}" for s in symbols.tolist()])
    truth = first_occurrences(symbols, seqs)
    store = MemoryDedupStore()
    dedups = [make(store, TINY if tiny else CONFIG) for _ in range(consumers)]
    keep = []
    for i, part in enumerate(split_at(batch, cuts)):
        dedup = dedups[i % consumers]
        if consumers > 1:
            dedup.warm()
        keep.extend(committed(dedup, part).tolist())
    assert keep == truth


# -- the two phases around the commit -------------------------------------------------------


def two_phase(store: MemoryDedupStore, config: DedupConfig = CONFIG) -> CommitAlignedDeduplicator:
    return CommitAlignedDeduplicator(store, config=config, wall_clock=ManualClock(START))


def test_two_phase_catches_a_duplicate_of_a_key_still_pending() -> None:
    dedup = two_phase(MemoryDedupStore())
    assert dedup.check(trades([1, 2, 3])).all()
    assert dedup.check(trades([3, 4])).tolist() == [False, True]  # 3 is not in Redis yet
    assert dedup.summary()["pending_duplicates"] == 1 and dedup.summary()["pending"] == 4


def test_two_phase_writes_nothing_before_record_so_a_crash_loses_nothing() -> None:
    store = MemoryDedupStore()
    two_phase(store).check(trades([1, 2, 3]))  # the process dies before its commit
    restarted = two_phase(store)
    assert restarted.check(trades([1, 2, 3])).all()
    restarted.record(restarted.stage())
    again = two_phase(store)
    again.warm()
    assert again.check(trades([2, 9])).tolist() == [False, True]


def test_two_phase_restage_keeps_keys_pending_after_a_failed_commit() -> None:
    dedup = two_phase(MemoryDedupStore())
    dedup.check(trades([1, 2]))
    staged = dedup.stage()
    dedup.restage(staged)  # the commit failed
    assert dedup.check(trades([2])).tolist() == [False]
    assert len(dedup.stage()) == 2


def test_two_phase_record_counts_keys_another_consumer_recorded_first() -> None:
    store = MemoryDedupStore()
    a, b = two_phase(store), two_phase(store)
    a.check(trades([1, 2]))
    b.check(trades([2, 3]))  # b cannot know a's pending key 2
    assert a.record(a.stage()) == 0
    assert b.record(b.stage()) == 1
    assert b.summary()["late_duplicates"] == 1


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), tiny=st.booleans(), cuts=st.lists(st.integers(0, 2_000)))
def test_two_phase_keeps_exactly_the_first_occurrence(
    seed: int, tiny: bool, cuts: list[int]
) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 2_000))
    symbols, seqs = rng.integers(0, 3, n), rng.integers(0, 300, n)
    batch = trades(seqs.tolist(), [f"S{s}" for s in symbols.tolist()])
    truth = first_occurrences(symbols, seqs)
    dedup = two_phase(MemoryDedupStore(), TINY if tiny else CONFIG)
    keep: list[bool] = []
    for i, part in enumerate(split_at(batch, cuts)):
        keep += dedup.check(part).tolist()
        if i % 2:  # a commit now and then
            dedup.record(dedup.stage())
    assert keep == truth


@pytest.mark.parametrize("config", [CONFIG, TINY], ids=["bloom", "every-key-a-maybe"])
def test_a_new_session_reusing_seqs_is_kept_and_its_copies_dropped(config: DedupConfig) -> None:
    store = MemoryDedupStore()
    dedup = make(store, config)
    committed(dedup, trades([1, 2, 3]))
    later = trades([1, 2, 3]).with_session(np.full(3, 5_000_000))
    assert committed(dedup, later).tolist() == [True, True, True]  # other keys: a new session
    assert dedup.check(later).tolist() == [False, False, False]  # its copies
    assert dedup.check(trades([2])).tolist() == [False]  # and the first session's
    # A restarted process warms from the store and still tells the sessions apart.
    fresh = make(store, config)
    fresh.warm()
    assert fresh.check(later).tolist() == [False] * 3
    assert fresh.check(trades([4]).with_session(np.full(1, 5_000_000))).tolist() == [True]
