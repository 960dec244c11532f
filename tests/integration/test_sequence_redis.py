"""The Redis sequence tracker against a real Redis: same labels as the memory tracker, shared
state across consumers and restarts, and atomic batches under concurrent threads."""

from __future__ import annotations

import random
import struct
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k2lib.errors import ServiceError
from k2lib.ingestion import scripts
from k2lib.ingestion.scripts import drop_prefix
from k2lib.ingestion.sequence import SeqLabel, SequenceConfig
from k2lib.ingestion.sequence.gaps import list_gaps
from k2lib.ingestion.sequence.redis import RedisSequenceTracker
from k2lib.testing import FaultyStreamSpec, MemorySequenceTracker, faulty_stream
from k2lib.wire.schema import TradeBatch
from tests.helpers import split_at, symbol_trades
from tests.integration.redis_scratch import fresh_prefix, scratch_fixtures, scratch_prefix
from tests.strategies import faulty_specs

pytestmark = [pytest.mark.integration, pytest.mark.scalability, pytest.mark.phase2]

CONFIG = SequenceConfig(reset_jump=10, reset_quiet_us=1_000_000)
client, prefix = scratch_fixtures("seq")
SPECS = faulty_specs(max_keys=4, max_length=80)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=SPECS, seed=st.integers(0, 2**32), bounds=st.lists(st.integers(0, 10_000), max_size=6))
def test_redis_and_memory_trackers_agree_record_for_record(
    client: redis.Redis, spec: FaultyStreamSpec, seed: int, bounds: list[int]
) -> None:
    batch, truth = faulty_stream(random.Random(seed), spec)
    with scratch_prefix(client, "seq") as p:
        red = RedisSequenceTracker(client, prefix=p, config=CONFIG)
        mem = MemorySequenceTracker(config=CONFIG)
        stored = []
        for part in split_at(batch, bounds):
            a, b = mem.classify_batch(part), red.classify_batch(part)
            assert a.labels.tolist() == b.labels.tolist()
            assert a.sessions.tolist() == b.sessions.tolist()
            assert a.new_gaps == b.new_gaps
            assert a.abandoned_gap_messages == b.abandoned_gap_messages
            stored.append(part.with_session(b.sessions))
        assert red.open_gaps() == mem.open_gaps() == truth.open_gaps
        # Redis lost it: replaying the rows in their sessions rebuilds the same state.
        drop_prefix(client, p)
        rebuilt = RedisSequenceTracker(client, prefix=p, config=CONFIG)
        for part in stored:
            rebuilt.replay_committed(part)
        assert rebuilt.open_gaps() == truth.open_gaps
        again = batch.take(np.arange(len(batch) // 2, len(batch)))  # the feed re-sent
        a, b = mem.classify_batch(again), rebuilt.classify_batch(again)
        assert a.labels.tolist() == b.labels.tolist()
        assert a.sessions.tolist() == b.sessions.tolist()


def test_two_consumers_share_state_through_redis(client: redis.Redis, prefix: str) -> None:
    spec = FaultyStreamSpec(keys=5, sessions=2, max_length=400)
    batch, truth = faulty_stream(random.Random(7), spec)
    consumers = [RedisSequenceTracker(client, prefix=prefix, config=CONFIG) for _ in range(2)]
    reference = MemorySequenceTracker(config=CONFIG)
    parts = split_at(batch, range(0, len(batch), 37))
    duplicates = 0
    for i, part in enumerate(parts):
        got = consumers[i % 2].classify_batch(part)  # interleaved: A, B, A, B, ...
        assert got.labels.tolist() == reference.classify_batch(part).labels.tolist()
        duplicates += got.duplicates
    assert duplicates == truth.duplicates
    assert consumers[0].open_gaps() == consumers[1].open_gaps() == truth.open_gaps


def test_a_restart_keeps_the_state(
    client: redis.Redis, prefix: str, redis_connect: Callable[[], Any]
) -> None:
    first = RedisSequenceTracker(client, prefix=prefix, config=CONFIG)
    first.classify_batch(trades([1, 2, 5]))
    again = RedisSequenceTracker(redis_connect(), prefix=prefix, config=CONFIG)
    result = again.classify_batch(trades([2, 3, 6]))
    assert [SeqLabel(x) for x in result.labels.tolist()] == [
        SeqLabel.DUPLICATE,
        SeqLabel.LATE_FILL,
        SeqLabel.IN_ORDER,
    ]
    assert list_gaps(client, prefix) == [
        {"exchange": "binance", "symbol": "BTC", "first": 4, "last": 4}
    ]


def test_redelivered_kafka_records_are_duplicates_after_a_restart(
    client: redis.Redis, prefix: str
) -> None:
    batch = trades([1, 2, 4, 5]).with_kafka(np.zeros(4), np.arange(100, 104))
    RedisSequenceTracker(client, prefix=prefix, config=CONFIG).classify_batch(
        batch.take(np.arange(3))
    )
    result = RedisSequenceTracker(client, prefix=prefix, config=CONFIG).classify_batch(batch)
    assert result.duplicates == 3
    assert [SeqLabel(x) for x in result.labels.tolist()][-1] == SeqLabel.IN_ORDER
    assert list_gaps(client, prefix) == [
        {"exchange": "binance", "symbol": "BTC", "first": 3, "last": 3}
    ]


def test_backfilled_records_fill_their_gap(client: redis.Redis, prefix: str) -> None:
    batch = trades(list(range(1, 11))).with_kafka(np.zeros(10), np.arange(10))
    tracker = RedisSequenceTracker(client, prefix=prefix, config=CONFIG)
    tracker.classify_batch(batch.take(np.r_[0:4, 7:10]))  # offsets 4..6 deferred (shed)
    backfill = tracker.classify_batch(batch.take(np.arange(4, 7)))
    assert backfill.late_fills == 3
    assert list_gaps(client, prefix) == []


def test_batches_are_atomic_under_concurrent_threads(
    client: redis.Redis, prefix: str, redis_connect: Callable[[], Any]
) -> None:
    keys, seqs, threads = 5, 1_500, 4
    # Every thread delivers the whole stream: each seq's first arrival is new, the rest are
    # duplicates, whatever the interleaving. A lost update would break the count.
    stream = TradeBatch.from_columns(
        exchange=["binance"] * keys * seqs,
        symbol=[f"S{k}" for s in range(seqs) for k in range(keys)],
        seq=[s + 1 for s in range(seqs) for _ in range(keys)],
        exch_ts=[s for s in range(seqs) for _ in range(keys)],
        recv_ts=[0] * keys * seqs,
        price=[1] * keys * seqs,
        qty=[1] * keys * seqs,
    )
    parts = split_at(stream, range(0, len(stream), 53))
    results: list[list[int]] = [[] for _ in range(threads)]

    def consume(i: int) -> None:
        tracker = RedisSequenceTracker(redis_connect(), prefix=prefix)
        for part in parts:
            results[i].extend(tracker.classify_batch(part).labels.tolist())

    workers = [threading.Thread(target=consume, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    everything = np.array([x for r in results for x in r])
    assert everything.size == threads * keys * seqs
    assert np.count_nonzero(everything == SeqLabel.DUPLICATE) == (threads - 1) * keys * seqs
    assert list_gaps(client, prefix) == []


def test_redis_down_raises_service_error_and_changes_nothing() -> None:
    dead = redis.Redis(port=1, socket_connect_timeout=0.2)
    tracker = RedisSequenceTracker(dead, prefix=fresh_prefix("seq"))
    with pytest.raises(ServiceError):
        tracker.classify_batch(trades([1, 2]))


def trades(seqs: list[int]) -> TradeBatch:
    return symbol_trades(seqs, [1_000 * s for s in seqs], symbol="BTC")


def test_a_state_written_before_sessions_reads_as_session_zero(
    client: redis.Redis, prefix: str
) -> None:
    """A Redis holding the layout without the session word (first, last, last_ts, gaps)."""
    tracker = RedisSequenceTracker(client, prefix=prefix, config=CONFIG)
    tracker.classify_batch(trades([1]))
    (key,) = [k for k in scripts.scan_prefix(client, prefix) if b"k:" in k]
    client.set(key, struct.pack("<qqqqq", 1, 9, 9_000, 4, 6))  # 1..9, gap 4..6, no session
    assert list_gaps(client, prefix) == []  # the index was not told; the state still parses
    result = tracker.classify_batch(trades([5, 10]))
    assert [SeqLabel(x) for x in result.labels.tolist()] == [SeqLabel.LATE_FILL, SeqLabel.IN_ORDER]
    assert result.sessions.tolist() == [0, 0]
    assert struct.unpack("<qqqq", client.get(key)[:32]) == (1, 10, 10_000, 0)  # session 0
