"""`k2 bench sequence`: `RedisSequenceTracker.classify_batch` against per-record Redis calls.

Same records, same Redis, same run:

- K2: one EVALSHA per batch (runs compression, Lua), end to end from a `TradeBatch`;
- baseline: the same state kept per record, as a per-message design would: one EVALSHA of a
  single-record script per record, pipelined per batch (so it pays no round trip per record).

The feed is `symbols` symbols trading in order, interleaved at random, with one drop and one
duplicate in ten thousand records, so the tracker does real work.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import redis
from redis.client import Pipeline

from k2lib.bench.redis_rates import pipelined_rate, timing_fields
from k2lib.ingestion.scripts import drop_prefix
from k2lib.ingestion.sequence import SeqLabel
from k2lib.ingestion.sequence.redis import RedisSequenceTracker
from k2lib.testing import MemorySequenceTracker
from k2lib.wire.schema import TradeBatch

__all__ = ["feed_batches", "run", "scratch_redis"]

FAULT_RATE = 1e-4
BASELINE_SHARE = 0.2  # the baseline is slow: it runs on the first fifth of the batches
_PER_RECORD_LUA = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local seq = tonumber(ARGV[1])
if last < 0 or seq == last + 1 then redis.call('SET', KEYS[1], seq) return 0 end
if seq <= last then return 1 end
redis.call('SET', KEYS[1], seq)
return 2
"""


def feed_batches(
    records: int, batch_size: int, symbols: int, *, seed: int = 11, fault_rate: float = FAULT_RATE
) -> list[TradeBatch]:
    """In-order trades of `symbols` symbols, interleaved at random, with rare drops and dups."""
    rng = np.random.default_rng(seed)
    names = np.array([f"SYM{i:04d}USDT".encode() for i in range(symbols)], dtype="S16")
    next_seq = np.full(symbols, 5_000_000_000, np.int64)
    batches = []
    for start in range(0, records, batch_size):
        n = min(batch_size, records - start)
        sym = rng.integers(0, symbols, n)
        counts = np.bincount(sym, minlength=symbols)
        order = np.argsort(sym, kind="stable")
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
        seq = next_seq[sym] + rank
        next_seq += counts
        faults = rng.random(n) < fault_rate
        seq[faults] += 1  # half dropped-then-resent, half a duplicate of the next one
        ts = 1_723_161_600_000_000 + (seq - 5_000_000_000) * 1_000
        batches.append(
            TradeBatch.from_columns(
                exchange=np.full(n, b"binance", "S16"),
                symbol=names[sym],
                seq=seq,
                exch_ts=ts,
                recv_ts=ts,
                price=np.full(n, 6_000_000_000_000, np.int64),
                qty=np.full(n, 1_000_000, np.int64),
            )
        )
    return batches


@contextmanager
def scratch_redis(redis_url: str | redis.Redis, name: str) -> Iterator[tuple[redis.Redis, str]]:
    """A client (opened here from a URL, or the one given) and a fresh key prefix under
    `k2:bench:{name}:`; every key under it is deleted afterwards, and an opened client closed."""
    owned = not isinstance(redis_url, redis.Redis)
    client = redis.Redis.from_url(redis_url) if isinstance(redis_url, str) else redis_url
    prefix = f"k2:bench:{name}:{uuid.uuid4().hex[:8]}:"
    try:
        yield client, prefix
    finally:
        drop_prefix(client, prefix)
        if owned:
            client.close()


def _baseline(client: redis.Redis, prefix: str, batches: list[TradeBatch]) -> float:
    script = client.register_script(_PER_RECORD_LUA)
    script(keys=[f"{prefix}warmup"], args=[0])

    def queue(pipe: Pipeline, batch: TradeBatch) -> None:
        keys = [f"{prefix}{s}" for s in batch.symbol.tolist()]
        for key, seq in zip(keys, batch.seq.tolist(), strict=True):
            script(keys=[key], args=[seq], client=pipe)

    return pipelined_rate(client, batches, queue)


def run(
    redis_url: str | redis.Redis,
    *,
    records: int = 2_000_000,
    batch_size: int = 10_000,
    symbols: int = 500,
) -> dict[str, Any]:
    """The k2 bench JSON object. `redis_url` may be a client (e.g. with a password)."""
    batches = feed_batches(records, batch_size, symbols)
    with scratch_redis(redis_url, "seq") as (client, prefix):
        # Load the script (and warm the connection) outside the timed loop.
        RedisSequenceTracker(client, prefix=f"{prefix}warm:").classify_batch(batches[0])
        tracker = RedisSequenceTracker(client, prefix=f"{prefix}k2:")
        latencies, totals = [], np.zeros(len(SeqLabel), np.int64)
        started = time.perf_counter()
        for batch in batches:
            t = time.perf_counter()
            result = tracker.classify_batch(batch)
            latencies.append(time.perf_counter() - t)
            totals += np.bincount(result.labels, minlength=len(SeqLabel))
        seconds = time.perf_counter() - started
        value = records / seconds
        share = batches[: max(1, int(len(batches) * BASELINE_SHARE))]
        baseline = _baseline(client, f"{prefix}base:", share)
        memory = MemorySequenceTracker()
        t = time.perf_counter()
        for batch in share:
            memory.classify_batch(batch)
        memory_rate = sum(len(b) for b in share) / (time.perf_counter() - t)
    return {
        "name": "sequence",
        "value": round(value, 1),
        "unit": "records/s",
        "baseline": round(baseline, 1),
        "baseline_label": "per-record EVALSHA of a single-record script, pipelined per batch",
        **timing_fields(value, baseline, batches, seconds, latencies),
        "batch_size": batch_size,
        "symbols": symbols,
        "baseline_records": sum(len(b) for b in share),
        "memory_tracker_records_s": round(memory_rate, 1),
        "labels": {label.name.lower(): int(totals[label]) for label in SeqLabel},
        "target": ">= 1,000,000 records/s and ratio >= 10",
    }
