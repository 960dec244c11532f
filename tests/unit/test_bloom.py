"""The NumPy split-block Bloom filter and its rotating generations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k2lib.clock import ManualClock
from k2lib.errors import ConfigError
from k2lib.ingestion.dedup.bloom import (
    BloomFilter,
    RotatingBloom,
    bits_per_key,
    classic_bloom_bytes,
    split_block_fpr,
)
from k2lib.ingestion.dedup.keys import key_hash, name_hashes

pytestmark = [pytest.mark.unit, pytest.mark.scalability, pytest.mark.phase2]


def random_hashes(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * 2


def test_sizing_follows_the_false_positive_formula() -> None:
    assert split_block_fpr(bits_per_key(0.001)) <= 0.001
    assert split_block_fpr(bits_per_key(0.001) - 0.1) > 0.001
    assert 16.8 < bits_per_key(0.001) < 17.0  # ~17% above a classic filter's 14.4
    ten_million = BloomFilter(capacity=10_000_000, error_rate=0.001)
    assert 21_000_000 < ten_million.memory_bytes < 22_000_000
    assert classic_bloom_bytes(10_000_000, 0.001) == 17_971_985  # 143.8M bits


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(0, 5_000))
def test_no_false_negatives(seed: int, n: int) -> None:
    bloom = BloomFilter(capacity=max(n, 1), error_rate=0.01)
    keys = random_hashes(n, seed)
    bloom.add_batch(keys[: n // 2])
    bloom.add_batch(keys[n // 2 :])
    assert bloom.contains_batch(keys).all()


def test_false_positive_rate_at_capacity_is_near_the_target() -> None:
    bloom = BloomFilter(capacity=50_000, error_rate=0.01)
    bloom.add_batch(random_hashes(50_000, 1))
    observed = bloom.contains_batch(random_hashes(200_000, 2)).mean()
    assert 0.005 < observed < 0.015


def test_hashing_is_deterministic_across_processes() -> None:
    # Pinned values: Python's salted hash() (rbloom's default) would change on every run.
    name = name_hashes(np.array([b"binance"], "S16"), np.array([b"BTCUSDT"], "S16"))
    assert name.tolist() == [0xB8EBAAC213602918]
    assert name_hashes(np.array(["binance"]), np.array(["BTCUSDT"])).tolist() == name.tolist()
    h = key_hash(name, np.array([42]))
    assert h.tolist() == [5803275840227179936]
    bloom = BloomFilter(capacity=100, error_rate=0.01)
    bloom.add_batch(h)
    assert bloom.contains_batch(h).all()


def test_rotation_keeps_keys_for_the_horizon_then_forgets() -> None:
    clock = ManualClock(1_000.0)
    bloom = RotatingBloom(capacity=1_000, error_rate=0.001, window_s=10.0, clock=clock)
    keys = random_hashes(500, 3)
    bloom.add_batch(keys)
    clock.advance(10.0)  # next window: the key's generation is still live
    assert bloom.contains_batch(keys).all()
    later = random_hashes(500, 4)
    bloom.add_batch(later)
    clock.advance(10.0)  # two windows on: the first generation is cleared
    assert bloom.contains_batch(keys).mean() < 0.01
    assert bloom.contains_batch(later).all()


def test_warming_writes_into_a_live_older_window_only() -> None:
    clock = ManualClock(100.0)
    bloom = RotatingBloom(capacity=1_000, error_rate=0.001, window_s=10.0, clock=clock)
    keys = random_hashes(100, 5)
    bloom.add_batch(keys, window=bloom.window() - 1)
    bloom.add_batch(random_hashes(100, 6), window=bloom.window() - 5)  # dead: ignored
    assert bloom.contains_batch(keys).all()
    clock.advance(10.0)  # the older window leaves the horizon
    assert bloom.contains_batch(keys).mean() < 0.05


def test_memory_is_generations_times_the_filter() -> None:
    clock = ManualClock()
    bloom = RotatingBloom(capacity=10_000, error_rate=0.001, window_s=1, generations=4, clock=clock)
    assert bloom.memory_bytes == 4 * BloomFilter(capacity=10_000, error_rate=0.001).memory_bytes


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity": 0, "error_rate": 0.01},
        {"capacity": 10, "error_rate": 1.0},
        {"capacity": 10, "error_rate": 0.01, "generations": 1},
        {"capacity": 10, "error_rate": 0.01, "window_s": 0},
    ],
)
def test_rotating_bloom_rejects_bad_config(kwargs: dict) -> None:
    args = {"window_s": 1.0, "clock": ManualClock(), **kwargs}
    with pytest.raises(ConfigError):
        RotatingBloom(**args)
