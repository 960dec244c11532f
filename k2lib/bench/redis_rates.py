"""What the Redis benches (`k2 bench sequence`, `k2 bench dedup`) measure the same way: the
per-record baseline, pipelined per batch, and the timing fields of their JSON objects."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import redis
from redis.client import Pipeline

from k2lib.wire.schema import TradeBatch

__all__ = ["pipelined_rate", "timing_fields"]


def pipelined_rate(
    client: redis.Redis,
    batches: Sequence[TradeBatch],
    queue: Callable[[Pipeline, TradeBatch], None],
) -> float:
    """Records per second when `queue` puts one command per record of a batch on a pipeline
    and the pipeline runs once per batch."""
    started = time.perf_counter()
    for batch in batches:
        pipe = client.pipeline(transaction=False)
        queue(pipe, batch)
        pipe.execute()
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


def timing_fields(
    value: float,
    baseline: float,
    batches: Sequence[TradeBatch],
    seconds: float,
    latencies: Sequence[float],
) -> dict[str, Any]:
    """ "ratio" (K2's records/s over the baseline's), the records and batches K2 went
    through in `seconds`, and the median and p99 of its per-batch `latencies`."""
    ms = np.array(latencies) * 1e3
    return {
        "ratio": round(value / baseline, 2),
        "records": sum(len(b) for b in batches),
        "batches": len(batches),
        "seconds": round(seconds, 3),
        "p50_batch_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_batch_ms": round(float(np.percentile(ms, 99)), 2),
    }
