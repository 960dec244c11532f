"""The commit ordering of the overlapped, compare-and-set commit, driven step by step.

Kafka and Redis are in-process twins (k2lib.testing); the Iceberg table is a real pyiceberg
SqlCatalog on a SQLite file in tmp_path. Every check counts the raw table.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pyiceberg.catalog.sql import SqlCatalog

from k2lib.clock import ManualClock
from k2lib.errors import CommitFencedError, ServiceError
from k2lib.ingestion.dedup import CommitAlignedDeduplicator, DedupConfig
from k2lib.ingestion.pipeline import IngestConfig, IngestPipeline
from k2lib.ingestion.resilient import ResilientStages
from k2lib.resilience import (
    CircuitBreaker,
    DeferredSpill,
    DegradationLevel,
    DegradationManager,
    LoadShedder,
)
from k2lib.storage.table import ensure_table, held_mask, latest_offsets, stored_keys
from k2lib.storage.writer import IcebergWriter
from k2lib.testing import (
    ListDeadLetters,
    ListSource,
    MemoryDedupStore,
    MemorySequenceTracker,
    MemoryStateLedger,
)
from k2lib.wire.codec import encode_batch
from k2lib.wire.schema import TradeBatch
from tests.helpers import symbol_trades

pytestmark = [pytest.mark.unit]

TOPIC = "t.trades"
TABLE = "t.trades"
T0 = 1_750_000_000_000_000
START = 1_750_000_000.0


def stored_rows(table):
    table.refresh()
    return table.scan().to_arrow()


def trades(seqs: list[int], symbol: str = "BTCUSDT", t0: int = T0) -> list[bytes]:
    ts = [t0 + s for s in seqs]
    return encode_batch(symbol_trades(seqs, ts, symbol=symbol, price=100_000_000, qty=1_000))


class Redis:
    """The shared "Redis" of several processes: dedup store, tracker, ledger."""

    def __init__(self) -> None:
        self.store = MemoryDedupStore()
        self.tracker = MemorySequenceTracker()
        self.ledger = MemoryStateLedger([self.flush])

    def flush(self) -> None:
        self.store.__init__()  # type: ignore[misc]
        self.tracker.__init__()  # type: ignore[misc]


class Process:
    """One ingest process: its own table handle, Bloom filter, buffer and stages."""

    def __init__(
        self, tmp: Path, source: ListSource, redis: Redis, wall_clock=time.time, **config: float
    ) -> None:
        catalog = SqlCatalog(
            "t", uri=f"sqlite:///{tmp}/catalog.db", warehouse=f"file://{tmp}/warehouse"
        )
        self.table = ensure_table(catalog, TABLE)
        self.writer = IcebergWriter(self.table, TOPIC, partitions=source.partitions)
        self.gate = threading.Event()
        self.gate.set()
        self.writer.delay_s = self._hold
        registry = CollectorRegistry()
        self.dedup = CommitAlignedDeduplicator(
            redis.store,
            config=DedupConfig(window_s=60.0, capacity=10_000),
            wall_clock=wall_clock,
            registry=registry,
        )
        stages = ResilientStages(
            manager=DegradationManager(registry=registry),
            shedder=LoadShedder(registry=registry),
            spill=DeferredSpill(tmp / f"spill-{id(self)}"),
            breakers={n: CircuitBreaker(n, registry=registry) for n in ("redis", "iceberg_commit")},
            tracker=redis.tracker,
            dedup=self.dedup,
            ledger=redis.ledger,
        )
        self.dlq = ListDeadLetters()
        self.pipeline = IngestPipeline(
            source=source,
            sink=self.writer,
            dlq=self.dlq,
            stages=stages,
            config=IngestConfig(commit_interval_s=config.get("interval", 3600.0)),
            registry=registry,
            sleep=lambda s: None,
        )

    def _hold(self) -> float:
        assert self.gate.wait(10), "a commit was held and never released"
        return 0.0

    def drain(self) -> None:
        """Poll until idle and commit; again if that commit rewound (as `run` does)."""
        while True:
            rewinds = self.pipeline.counts.rewinds
            while self.pipeline.step():
                pass
            assert self.pipeline.flush()
            if self.pipeline.counts.rewinds == rewinds:
                return


def shared(source: ListSource) -> ListSource:
    """A second consumer of the same topic (the log is shared, positions are not)."""
    twin = ListSource(source.topic, len(source.partitions))
    twin.log = source.log
    return twin


def assert_exact(table, expected: int, offsets: dict[int, int] | None = None) -> None:
    """`expected` rows, none twice; and, when given, the Kafka `offsets` the latest snapshot
    records."""
    table.refresh()
    keys = stored_keys(table)
    dups = [k for k, n in Counter(keys).items() if n > 1]
    assert not dups, f"stored twice: {dups[:5]}"
    assert len(keys) == expected
    if offsets is not None:
        assert latest_offsets(table).offsets == offsets


def test_a_duplicate_polled_while_its_original_commits_is_dropped(tmp_path: Path) -> None:
    source = ListSource(TOPIC, 1)
    proc = Process(tmp_path, source, Redis())
    source.publish(0, trades(list(range(1, 101))))
    assert proc.pipeline.step() == 100
    proc.gate.clear()  # the commit stalls in the committer thread
    proc.pipeline.commit()
    source.publish(0, trades([50, 99]))  # re-sent while the originals are in flight
    assert proc.pipeline.step() == 2
    proc.gate.set()
    assert proc.pipeline.flush()
    assert_exact(proc.table, 100, offsets={0: 102})


def test_a_second_writer_on_the_same_partitions_is_fenced_and_rewinds(tmp_path: Path) -> None:
    redis = Redis()
    source = ListSource(TOPIC, 2)
    a = Process(tmp_path, source, redis)
    b = Process(tmp_path, shared(source), redis)
    source.publish(0, trades(list(range(1, 501))))
    source.publish(1, trades(list(range(1, 301)), "ETHUSDT"))
    assert a.pipeline.step() and b.pipeline.step()  # both buffered everything
    assert a.pipeline.flush()
    assert b.pipeline.flush()  # fenced, rewound to a's offsets, nothing left to write
    assert b.pipeline.counts.rewinds == 1
    source.publish(0, trades(list(range(480, 601))))  # overlaps what is stored
    b.drain()
    a.drain()  # fenced by b this time
    assert a.pipeline.counts.rewinds == 1
    assert_exact(a.table, 600 + 300, offsets={0: 621, 1: 300})


def test_fenced_commit_appends_nothing(tmp_path: Path) -> None:
    source = ListSource(TOPIC, 1)
    redis = Redis()
    a = Process(tmp_path, source, redis)
    b = Process(tmp_path, shared(source), redis)
    source.publish(0, trades([1, 2, 3]))
    a.drain()
    with pytest.raises(CommitFencedError):
        b.writer.commit(TradeBatch.empty(), {0: 3})
    assert_exact(a.table, 3)


def test_a_crash_between_the_commit_and_its_hooks_loses_no_dedup_key(tmp_path: Path) -> None:
    redis = Redis()
    source = ListSource(TOPIC, 1)
    a = Process(tmp_path, source, redis)
    source.publish(0, trades(list(range(1, 201))))
    a.pipeline.step()
    a.pipeline.commit()
    assert a.pipeline.committer.inflight is not None
    a.pipeline.committer.inflight.future.result()  # the snapshot landed; the process dies here
    assert not redis.store.bitmaps, "keys reached Redis before the hooks ran"
    source.publish(0, trades(list(range(1, 201))))  # the feed is sent again
    b = Process(tmp_path, shared(source), redis)
    b.drain()
    assert_exact(b.table, 200)


def test_an_ambiguous_commit_error_after_landing_is_not_appended_again(tmp_path: Path) -> None:
    source = ListSource(TOPIC, 1)
    proc = Process(tmp_path, source, Redis())
    real = proc.table.append
    failures = iter([True])

    def append_then_lose_the_reply(*args, **kwargs):
        real(*args, **kwargs)
        if next(failures, False):
            raise OSError("connection reset by peer")

    proc.table.append = append_then_lose_the_reply  # type: ignore[method-assign]
    proc.writer.sleep = lambda s: None
    source.publish(0, trades(list(range(1, 51))))
    proc.drain()
    assert_exact(proc.table, 50)
    assert len(proc.table.snapshots()) == 1


def test_redis_state_lost_before_a_commit_means_a_rewind_not_a_commit(tmp_path: Path) -> None:
    redis = Redis()
    source = ListSource(TOPIC, 1)
    proc = Process(tmp_path, source, redis)
    source.publish(0, trades(list(range(1, 101))))
    proc.drain()
    source.publish(0, trades(list(range(101, 151))))
    proc.pipeline.step()
    redis.ledger.wipe()  # FLUSHALL: the rows just checked were checked against nothing
    source.publish(0, trades(list(range(1, 151))))  # and the whole feed again
    proc.drain()
    assert proc.pipeline.counts.rewind_reasons == {"redis state changed": 1}
    assert_exact(proc.table, 150)
    assert not redis.tracker.open_gaps()


def test_a_session_reset_inside_the_dedup_horizon_stores_the_new_session(tmp_path: Path) -> None:
    """The venue restarts its numbering 2 minutes later (the tracker's reset rule: more than
    1,000 below and 60 s quiet): the same seqs again are new trades, in a new session. Their
    copies, and the old session's, are still dropped, after Redis lost everything too."""
    redis = Redis()
    source = ListSource(TOPIC, 1)
    proc = Process(tmp_path, source, redis, interval=0.0)
    later = T0 + 120_000_000
    old, new = trades(list(range(1, 2001))), trades(list(range(1, 2001)), t0=later)
    source.publish(0, old[:1500])
    proc.pipeline.step()
    source.publish(0, [*old[1500:], *new[:700]])  # the reset lands mid-batch
    proc.drain()
    source.publish(0, [*new[700:], *new[:50], *old[:50]])  # with copies of both sessions
    proc.drain()
    assert_exact(proc.table, 4000)
    sessions = Counter(stored_rows(proc.table).column("session").to_pylist())
    assert sessions == {0: 2000, later + 1: 2000}  # named by the reset record's exch_ts
    assert redis.tracker.summary()["reset"] == 1 and not redis.tracker.open_gaps()
    redis.ledger.wipe()  # FLUSHALL, then the whole feed again
    source.publish(0, [*old, *new])
    proc.drain()
    assert_exact(proc.table, 4000)
    assert not redis.tracker.open_gaps()


def test_late_copies_of_a_longer_previous_session_are_dropped(tmp_path: Path) -> None:
    """After the reset, the old session's seqs 3001-5000 come again: the new session never
    reached them, so only their time says they are the old session's copies."""
    redis = Redis()
    source = ListSource(TOPIC, 1)
    proc = Process(tmp_path, source, redis, interval=0.0)
    old = trades(list(range(1, 5001)))
    new = trades(list(range(1, 3001)), t0=T0 + 120_000_000)
    source.publish(0, [*old, *new])
    proc.drain()
    source.publish(0, old[3000:])
    proc.drain()
    assert_exact(proc.table, 8000)
    assert not redis.tracker.open_gaps()
    redis.ledger.wipe()
    source.publish(0, [*old, *new, *old[4000:]])
    proc.drain()
    assert_exact(proc.table, 8000)
    assert not redis.tracker.open_gaps()


class FlakyTracker(MemorySequenceTracker):
    """The tracker's Redis, unreachable while `down`."""

    down = False

    def _apply(self, plan):
        if self.down:
            raise ServiceError("Redis sequence tracker: connection refused")
        return super()._apply(plan)


def test_records_deferred_while_redis_was_down_get_their_session_when_backfilled(
    tmp_path: Path,
) -> None:
    redis = Redis()
    redis.tracker = tracker = FlakyTracker()
    source = ListSource(TOPIC, 1)
    proc = Process(tmp_path, source, redis, interval=0.0)
    later = T0 + 120_000_000
    source.publish(0, trades(list(range(1, 2001))))
    proc.drain()
    tracker.down = True  # the new session arrives while the tracker cannot see it
    source.publish(0, trades(list(range(1, 1001)), t0=later))
    proc.pipeline.step()
    assert proc.pipeline.stages.deferred_for_redis == 1000
    tracker.down = False
    source.publish(0, trades(list(range(1001, 1501)), t0=later))
    proc.drain()
    assert_exact(proc.table, 3500)
    sessions = Counter(stored_rows(proc.table).column("session").to_pylist())
    assert sessions == {0: 2000, later + 1: 1500}
    assert tracker.summary()["reset"] == 1 and not tracker.open_gaps()


def test_dlq_not_confirmed_means_no_commit(tmp_path: Path) -> None:
    source = ListSource(TOPIC, 1)
    proc = Process(tmp_path, source, Redis())
    source.publish(0, [*trades([1, 2]), b"poison", *trades([3])])
    proc.dlq.fail_flush = True
    proc.pipeline.step()
    assert not proc.pipeline.flush()
    assert proc.table.current_snapshot() is None
    proc.dlq.fail_flush = False
    assert proc.pipeline.flush()
    assert [o for _, _, o in proc.dlq.sent] == [2]
    assert_exact(proc.table, 3, offsets={0: 4})


def test_every_snapshot_carries_every_partition(tmp_path: Path) -> None:
    redis = Redis()
    source = ListSource(TOPIC, 2)
    proc = Process(tmp_path, source, redis)
    source.publish(0, trades([1, 2]))
    source.publish(1, trades([1], "ETHUSDT"))
    proc.drain()
    first = latest_offsets(proc.table)
    # A writer that owns only partition 1 keeps partition 0's position.
    narrow = IcebergWriter(proc.table, TOPIC, partitions=[1])
    narrow.commit(TradeBatch.empty(), {1: 1})
    after = latest_offsets(proc.table)
    assert after.offsets == first.offsets == {0: 2, 1: 1}
    assert after.versions[0] == first.versions[0] and after.versions[1] > first.versions[1]
    assert np.all(np.diff([first.commit_number, after.commit_number]) == 1)


def test_a_backfill_deferred_past_the_dedup_horizon_is_checked_against_the_table(
    tmp_path: Path,
) -> None:
    source = ListSource(TOPIC, 1)
    clock = ManualClock(time.time())
    proc = Process(tmp_path, source, Redis(), wall_clock=clock)  # windows move with it
    source.publish(0, trades(list(range(1, 101))))
    proc.drain()
    # Copies of stored trades sat in the spill for longer than the horizon: Redis and the
    # Bloom filter have forgotten the originals, the table has not.
    stages = proc.pipeline.stages
    assert isinstance(stages, ResilientStages)
    late = TradeBatch.from_arrow(stored_rows(proc.table).slice(0, 10))
    token = stages.spill.append(late.to_arrow())
    assert token is not None
    old = time.time() - 3600
    os.utime(stages.spill.directory / token, (old, old))
    clock.advance(3 * 60.0)
    proc.drain()
    assert stages.rechecked == 10
    assert_exact(proc.table, 100)


def test_records_shed_meanwhile_are_not_reported_as_gaps(tmp_path: Path) -> None:
    redis = Redis()
    source = ListSource(TOPIC, 1)
    proc = Process(tmp_path, source, redis)
    stages = proc.pipeline.stages
    assert isinstance(stages, ResilientStages)
    stages.manager.force(DegradationLevel.AGGRESSIVE)  # sheds every tier below 1
    source.publish(0, trades(list(range(1, 51)), "DOGEUSDT"))
    proc.pipeline.step()
    assert stages.spill.pending_rows() == 50
    assert not redis.tracker.open_gaps()  # classified on arrival, deferred, not missing
    stages.manager.force(None)
    stages.manager.force(DegradationLevel.NORMAL)
    proc.drain()
    assert stages.spill.pending_rows() == 0
    assert not redis.tracker.open_gaps()
    assert_exact(proc.table, 50)


def test_held_mask_reads_the_table_exactly(tmp_path: Path) -> None:
    source = ListSource(TOPIC, 2)
    proc = Process(tmp_path, source, Redis())
    source.publish(0, trades([1, 2, 3]))
    source.publish(1, trades([7], "ETHUSDT"))
    proc.drain()
    mask = held_mask(
        proc.table,
        ["binance", "binance", "binance", "kraken", "binance"],
        ["BTCUSDT", "BTCUSDT", "ETHUSDT", "BTCUSDT", "ETHUSDT"],
        [2, 4, 7, 2, 1],
    )
    assert mask.tolist() == [True, False, True, False, False]
    later = held_mask(proc.table, ["binance"] * 2, ["BTCUSDT"] * 2, [2, 2], [0, 5])
    assert later.tolist() == [True, False]  # the same seq in another session is not held
