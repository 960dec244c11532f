"""`k2 bench dedup`: the two-tier `CommitAlignedDeduplicator` against exact per-record dedup
in Redis.

Same records, same Redis, same run:

- K2: what `k2 ingest` runs, `check` per batch (Bloom tier, then one read-only Lua call for
  the "maybe" keys) and `record` every 20 batches, as a commit would (one Lua call, bitmap
  spans);
- baseline: exact dedup with the raw client, one `SADD` per record (0 means seen before),
  pipelined per batch;
- details: the Bloom tier alone, and pybloom-live and rbloom (with a deterministic
  `hash_func`, as sharing a filter needs) checking and adding the same keys one at a time; the
  memory each needs for 10M keys at a 0.1% error rate.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from typing import Any

import numpy as np
import redis
from redis.client import Pipeline

from k2lib.bench.redis_rates import pipelined_rate, timing_fields
from k2lib.bench.sequence import feed_batches, scratch_redis
from k2lib.ingestion.dedup import CommitAlignedDeduplicator, DedupConfig, RedisDedupStore
from k2lib.ingestion.dedup.bloom import BloomFilter, RotatingBloom, classic_bloom_bytes
from k2lib.ingestion.dedup.keys import key_hash, name_hashes
from k2lib.wire.schema import TradeBatch

__all__ = ["run"]

BASELINE_SHARE = 0.2
LIBRARY_KEYS = 200_000  # pybloom-live and rbloom go one key at a time: a sample is enough
MEMORY_KEYS = 10_000_000
MEMORY_ERROR_RATE = 0.001
COMMIT_EVERY = 20  # batches per Iceberg commit


def _with_duplicates(batches: list[TradeBatch], rate: float = 0.001) -> list[TradeBatch]:
    """Re-send a few records of each batch in the next one, as a redelivering feed would."""
    rng = np.random.default_rng(3)
    out = [batches[0]]
    for prev, batch in itertools.pairwise(batches):
        again = rng.choice(len(prev), max(1, int(len(prev) * rate)), replace=False)
        out.append(TradeBatch.concat([batch, prev.take(np.sort(again))]))
    return out


def _hashes(batches: list[TradeBatch]) -> list[np.ndarray]:
    return [key_hash(name_hashes(b.exchange, b.symbol), b.seq) for b in batches]


def _bloom_only(hashes: list[np.ndarray], capacity: int) -> float:
    bloom = RotatingBloom(
        capacity=capacity, error_rate=MEMORY_ERROR_RATE, window_s=3600.0, clock=time.time
    )
    started = time.perf_counter()
    for h in hashes:
        bloom.contains_batch(h)
        bloom.add_batch(h)
    return sum(h.size for h in hashes) / (time.perf_counter() - started)


def _libraries(hashes: np.ndarray) -> dict[str, float]:
    from pybloom_live import BloomFilter as PyBloom
    from rbloom import Bloom

    keys = hashes[:LIBRARY_KEYS].tolist()
    rates: dict[str, float] = {}

    def stable_hash(key: Any) -> int:
        digest = hashlib.blake2b(key.to_bytes(8, "little"), digest_size=16).digest()
        return int.from_bytes(digest, "little", signed=True)

    for name, bloom in (
        ("pybloom_live", PyBloom(capacity=len(keys), error_rate=MEMORY_ERROR_RATE)),
        ("rbloom_stable_hash", Bloom(len(keys), MEMORY_ERROR_RATE, hash_func=stable_hash)),
        ("rbloom_salted_default_hash", Bloom(len(keys), MEMORY_ERROR_RATE)),
    ):
        started = time.perf_counter()
        for key in keys:  # check then add, as dedup does
            if key not in bloom:
                bloom.add(key)
        rates[f"{name}_keys_s"] = round(len(keys) / (time.perf_counter() - started), 1)
    return rates


def _memory() -> dict[str, int]:
    from pybloom_live import BloomFilter as PyBloom
    from rbloom import Bloom

    return {
        "k2_split_block_bytes": BloomFilter(
            capacity=MEMORY_KEYS, error_rate=MEMORY_ERROR_RATE
        ).memory_bytes,
        "classic_formula_bytes": classic_bloom_bytes(MEMORY_KEYS, MEMORY_ERROR_RATE),
        "pybloom_live_bytes": PyBloom(capacity=MEMORY_KEYS, error_rate=MEMORY_ERROR_RATE).num_bits
        // 8,
        "rbloom_bytes": Bloom(MEMORY_KEYS, MEMORY_ERROR_RATE).size_in_bits // 8,
    }


def _two_phase(
    dedup: CommitAlignedDeduplicator, batches: list[TradeBatch]
) -> tuple[float, list[float]]:
    """`check` every batch, `record` as a commit would. -> (seconds, seconds per batch)."""
    latencies = []
    started = time.perf_counter()
    for i, batch in enumerate(batches):
        t = time.perf_counter()
        dedup.check(batch)
        if i % COMMIT_EVERY == COMMIT_EVERY - 1:
            dedup.record(dedup.stage())
        latencies.append(time.perf_counter() - t)
    dedup.record(dedup.stage())
    return time.perf_counter() - started, latencies


def _baseline(client: redis.Redis, prefix: str, batches: list[TradeBatch]) -> float:
    def queue(pipe: Pipeline, batch: TradeBatch) -> None:
        pairs = zip(batch.symbol.tolist(), batch.seq.tolist(), strict=True)
        for symbol, seq in pairs:
            pipe.sadd(f"{prefix}set", b"%s:%d" % (symbol, seq))

    return pipelined_rate(client, batches, queue)


def run(
    redis_url: str | redis.Redis,
    *,
    records: int = 2_000_000,
    batch_size: int = 10_000,
    symbols: int = 500,
) -> dict[str, Any]:
    """The k2 bench JSON object. `redis_url` may be a client (e.g. with a password)."""
    batches = _with_duplicates(feed_batches(records, batch_size, symbols, seed=17, fault_rate=0))
    total = sum(len(b) for b in batches)
    config = DedupConfig(window_s=3600.0, capacity=max(total, 1))
    with scratch_redis(redis_url, "dedup") as (client, prefix):
        # Load the script (and warm the connection) outside the timed loop.
        warm = CommitAlignedDeduplicator(
            RedisDedupStore(client, prefix=f"{prefix}warm:"),
            config=DedupConfig(capacity=len(batches[0])),
        )
        warm.check(batches[0])
        warm.record(warm.stage())
        dedup = CommitAlignedDeduplicator(
            RedisDedupStore(client, prefix=f"{prefix}k2:"), config=config
        )
        seconds, latencies = _two_phase(dedup, batches)
        value = total / seconds
        totals = dedup.summary()
        share = batches[: max(1, int(len(batches) * BASELINE_SHARE))]
        baseline = _baseline(client, f"{prefix}base:", share)
    hashes = _hashes(batches)
    return {
        "name": "dedup",
        "value": round(value, 1),
        "value_label": "CommitAlignedDeduplicator, the one k2 ingest runs: Bloom check, Redis "
        "confirmation of maybes, keys recorded in Redis per commit",
        "unit": "records/s",
        "baseline": round(baseline, 1),
        "baseline_label": "exact dedup with redis-py: one SADD per record, pipelined per batch",
        **timing_fields(value, baseline, batches, seconds, latencies),
        "batch_size": batch_size,
        "symbols": symbols,
        "duplicates_dropped": totals.get("duplicates", 0),
        "duplicates_injected": total - records,
        "bloom_false_positives": totals.get("false_positives", 0),
        "baseline_records": sum(len(b) for b in share),
        "bloom_only_keys_s": round(_bloom_only(hashes, config.capacity), 1),
        "bloom_memory_bytes_in_run": dedup.memory_bytes,
        **_libraries(np.concatenate(hashes)),
        "memory_10m_keys_0.1pct": _memory(),
        "target": ">= 1,000,000 records/s with Redis, >= 3,000,000 keys/s Bloom tier alone",
    }
