"""Helpers that ship with the library for tests and benchmarks of the query path: a seeded
vectorised trade generator, a keyed producer configured like K2's, and an Iceberg append
that records offsets the way the ingest writer does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from confluent_kafka import Producer
from pyiceberg.table import Table

from k2lib.config import K2Settings
from k2lib.errors import ServiceError
from k2lib.storage.table import offsets_properties
from k2lib.storage.writer import storage_order
from k2lib.wire.codec import encode_batch
from k2lib.wire.schema import SCALE, TradeBatch

__all__ = [
    "DEFAULT_SYMBOLS",
    "append_with_offsets",
    "ingest_prefix",
    "next_seq",
    "produce",
    "synthetic_trades",
]

DEFAULT_SYMBOLS: tuple[str, ...] = (
    "BTCUSDT",
    "ETHUSDT",
    "SOLUSDT",
    "BNBUSDT",
    "XRPUSDT",
    "ADAUSDT",
)


def synthetic_trades(
    n: int,
    *,
    start_us: int,
    span_us: int,
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    exchange: str = "binance",
    first_seq: Mapping[str, int] | None = None,
    seed: int = 0,
) -> TradeBatch:
    """`n` trades spread evenly over [start_us, start_us + span_us), in time order.

    Each symbol's `seq` counts up from `first_seq[symbol]` (default 0), so consecutive
    calls with the returned `next_seq` continue a gap-free stream.
    """
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(symbols), n)
    # Per-symbol running count: the rank of each row among the earlier rows of its symbol.
    seq = np.empty(n, np.int64)
    for i, sym in enumerate(symbols):
        rows = np.flatnonzero(which == i)
        seq[rows] = (first_seq or {}).get(sym, 0) + np.arange(rows.size)
    ts = start_us + (np.arange(n, dtype=np.int64) * span_us) // max(n, 1)
    base = 100 * SCALE + which.astype(np.int64) * 1000 * SCALE
    names = np.array([s.encode() for s in symbols], dtype="S16")
    return TradeBatch.from_columns(
        exchange=np.full(n, exchange.encode(), dtype="S16"),
        symbol=names[which],
        seq=seq,
        exch_ts=ts,
        recv_ts=ts + rng.integers(100, 5000, n),
        price=base + rng.integers(0, 10 * SCALE, n),
        qty=rng.integers(1, 5 * SCALE, n),
        side=rng.integers(1, 3, n).astype(np.int8),
    )


def next_seq(batch: TradeBatch, before: Mapping[str, int] | None = None) -> dict[str, int]:
    """The `first_seq` that continues `batch`'s streams."""
    out = dict(before or {})
    codes, pairs = batch.key_codes()
    for code, (_, sym) in enumerate(pairs):
        out[sym] = int(batch.seq[codes == code].max()) + 1
    return out


def produce(settings: K2Settings, topic: str, batch: TradeBatch, *, timeout: float = 60.0) -> None:
    """Produce every row keyed `exchange:symbol`, idempotent, with Java's partitioner."""
    producer = Producer(
        settings.kafka_config(
            **{
                "partitioner": "murmur2_random",
                "enable.idempotence": True,
                "linger.ms": 20,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 1_000_000,
            }
        )
    )
    for i, (key, value) in enumerate(zip(batch.kafka_keys(), encode_batch(batch), strict=True)):
        producer.produce(topic, key=key, value=value)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(timeout) > 0:
        raise ServiceError(f"{topic}: messages still unsent after {timeout}s")


def append_with_offsets(
    table: Table,
    batch: TradeBatch,
    topic: str,
    offsets: Mapping[int, int],
    topic_id: str | None = None,
) -> None:
    """Append `batch` (with its Kafka columns) and record `offsets` (and the broker's
    `topic_id`, when given) as ingest does."""
    props = offsets_properties(topic, offsets, topic_id)
    table.append(storage_order(batch).to_arrow(), snapshot_properties=props)


def ingest_prefix(
    settings: K2Settings,
    table: Table,
    fraction: float | Mapping[int, float],
    topic_id: str | None = None,
) -> dict[int, int]:
    """Commit the first `fraction` of every partition of `settings.topic` to `table`, with
    offsets (and `topic_id`, when given) recorded as the ingest writer records them: a
    consumer that is behind. Returns the recorded offsets."""
    from k2lib.query.kafka_tail import KafkaTail, TailConfig

    tail = KafkaTail(settings, config=TailConfig(cache_records=0, pool_size=0))
    count = tail.partition_count(settings.topic)
    read = tail.read(settings.topic, dict.fromkeys(range(count), 0))
    share = fraction if isinstance(fraction, Mapping) else dict.fromkeys(range(count), fraction)
    offsets = {p: int(read.end_offsets[p] * share.get(p, 0.0)) for p in range(count)}
    limit = np.array([offsets[p] for p in range(count)], np.int64)
    batch = read.batch.take(read.batch.offset < limit[read.batch.partition])
    tail.close()
    append_with_offsets(table, batch, settings.topic, offsets, topic_id)
    return offsets
