"""The Redis key layout on a single Redis and on a Redis Cluster: names holding ':' never
collide, each prefix's keys share one slot (one atomic EVALSHA per batch), the ledger's wipe
reaches every primary, and a slot moved under a running tracker is followed (MOVED)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from k2lib.clock import ManualClock
from k2lib.ingestion import scripts
from k2lib.ingestion.dedup import CommitAlignedDeduplicator, DedupConfig, RedisDedupStore
from k2lib.ingestion.scripts import drop_prefix
from k2lib.ingestion.sequence import SeqLabel
from k2lib.ingestion.sequence.gaps import list_gaps
from k2lib.ingestion.sequence.redis import RedisSequenceTracker
from k2lib.ingestion.state import StateLedger
from k2lib.wire.schema import TradeBatch
from tests.integration.redis_scratch import fresh_prefix, scratch_prefix

pytestmark = [pytest.mark.integration, pytest.mark.scalability]

START = 1_700_000_000.0


@pytest.fixture
def prefix(redis_connect: Callable[[], Any]) -> Iterator[str]:
    with scratch_prefix(redis_connect(), "rc") as p:
        yield p


def trades(names: list[tuple[str, str]], seqs: list[int], offsets: list[int]) -> TradeBatch:
    n = len(seqs)
    return TradeBatch.from_columns(
        exchange=[e for e, _ in names],
        symbol=[s for _, s in names],
        seq=seqs,
        exch_ts=[1_000 * s for s in seqs],
        recv_ts=[0] * n,
        price=[1] * n,
        qty=[1] * n,
        partition=[0] * n,
        offset=offsets,
    )


def test_names_holding_a_colon_keep_their_own_state(
    redis_connect: Callable[[], Any], prefix: str
) -> None:
    left, right = ("a:b", "c"), ("a", "b:c")  # "a:b:c" either way, if joined by ':'
    tracker = RedisSequenceTracker(redis_connect(), prefix=f"{prefix}seq:")
    tracker.classify_batch(trades([left] * 3, [1, 2, 3], [0, 1, 2]))
    got = tracker.classify_batch(trades([right] * 2, [1, 5], [3, 4]))
    assert [SeqLabel(x) for x in got.labels.tolist()] == [SeqLabel.IN_ORDER, SeqLabel.GAP]
    assert list_gaps(redis_connect(), f"{prefix}seq:") == [
        {"exchange": "a", "symbol": "b:c", "first": 2, "last": 4}
    ]
    dedup = CommitAlignedDeduplicator(
        RedisDedupStore(redis_connect(), prefix=f"{prefix}dedup:"),
        config=DedupConfig(capacity=100),
        wall_clock=ManualClock(START),
    )
    assert dedup.check(trades([left, right], [7, 7], [0, 1])).tolist() == [True, True]
    dedup.record(dedup.stage())
    assert dedup.check(trades([left, right], [7, 7], [2, 3])).tolist() == [False, False]
    assert dedup.summary()["confirmed"] == 2  # both found in Redis, not only in-process


def test_every_key_of_a_prefix_lands_in_one_slot(
    redis_connect: Callable[[], Any], prefix: str
) -> None:
    client = redis_connect()
    names = [(f"ex{i % 3}", f"S{i}") for i in range(40)]
    batch = trades(names, list(range(1, 41)), list(range(40)))
    tracker = RedisSequenceTracker(client, prefix=f"{prefix}seq:")
    tracker.classify_batch(batch)
    tracker.classify_batch(trades(names[:1], [99], [40]))  # a gap: the open-gaps index too
    clock = ManualClock(START)
    dedup = CommitAlignedDeduplicator(
        RedisDedupStore(client, prefix=f"{prefix}dedup:"), wall_clock=clock
    )
    dedup.replay_committed(batch)
    clock.advance(dedup.config.window_s)  # the next window: a second hash
    dedup.replay_committed(trades(names[:1], [100], [41]))
    for stage, at_least in (("seq:", 41), ("dedup:", 2)):  # 40 states + the index; 2 windows
        keys = scripts.scan_prefix(client, f"{prefix}{stage}")
        assert len(keys) >= at_least
        assert len({key_slot(k) for k in keys}) == 1


def test_prefixes_spread_over_every_primary(redis_cluster: Any) -> None:
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    try:
        nodes = {
            client.get_node_from_key(scripts.tagged(f"k2:t{i}:tb:seq:")).name for i in range(40)
        }
        assert len(nodes) == len(redis_cluster.ports)
    finally:
        client.close()


def test_wipe_reaches_every_primary_and_spares_the_lock(redis_cluster: Any) -> None:
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    base = f"k2:{uuid.uuid4().hex}:"
    try:
        ledger = StateLedger(client, prefix=base, prefixes=(f"{base}seq:", f"{base}dedup:"))
        ledger.open_epoch([0, 1], 5)
        assert ledger.acquire_rebuild("me")
        # Keys of an old, untagged layout: spread over the slots of every node.
        old = [f"{base}seq:key:binance:S{i}" for i in range(60)]
        old += [f"{base}dedup:g{i}" for i in range(60)]
        for key in old:
            client.set(key, b"x")
        client.hset(f"{base}state", "epoch", "old")
        assert len({client.get_node_from_key(k).name for k in old}) == len(redis_cluster.ports)
        assert ledger.wipe() == len(old) + 2  # the old keys, the old ledger, the ledger
        assert client.exists(*old) == 0 and client.exists(f"{base}state") == 0
        assert ledger.read().epoch is None  # a rebuild follows
        assert client.exists(ledger.key.replace("state", "state-rebuild")) == 1
        ledger.release_rebuild("me")
    finally:
        drop_prefix(client, base)
        client.close()


def test_an_old_layout_reads_as_lost_state(redis_connect: Callable[[], Any], prefix: str) -> None:
    """Before the tags, the ledger was `{prefix}state`: its epoch must not vouch for keys
    that the new layout names differently, so the table rebuilds them."""
    client = redis_connect()
    client.hset(f"{prefix}state", mapping={"epoch": "before-tags", "p:0": "9"})
    ledger = StateLedger(client, prefix=prefix, prefixes=(f"{prefix}seq:",))
    assert ledger.read().epoch is None


def test_a_slot_moved_under_a_running_tracker_is_followed(redis_cluster: Any) -> None:
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    prefix = f"{fresh_prefix('rc')}seq:"
    try:
        tracker = RedisSequenceTracker(client, prefix=prefix)
        btc = [("binance", "BTC")]
        tracker.classify_batch(trades(btc * 3, [1, 2, 4], [0, 1, 2]))
        key = f"{scripts.tagged(prefix)}open-gaps"
        _move_slot(client, key_slot(key.encode()))
        got = tracker.classify_batch(trades(btc * 3, [3, 2, 5], [3, 4, 5]))  # MOVED, followed
        assert [SeqLabel(x) for x in got.labels.tolist()] == [
            SeqLabel.LATE_FILL,
            SeqLabel.DUPLICATE,
            SeqLabel.IN_ORDER,
        ]
        again = tracker.classify_batch(trades(btc, [5], [5]))  # Kafka redelivered offset 5
        assert [SeqLabel(x) for x in again.labels.tolist()] == [SeqLabel.DUPLICATE]
        assert list_gaps(client, prefix) == []
    finally:
        drop_prefix(client, prefix)
        client.close()


def _move_slot(client: RedisCluster, slot: int) -> None:
    """Migrate `slot` and its keys to another primary, as `redis-cli --cluster reshard` does,
    behind the back of `client` (its slot map goes stale)."""
    nodes = client.get_primaries()
    source = client.nodes_manager.get_node_from_slot(slot)
    target = next(n for n in nodes if n.name != source.name)
    raw = {n.name: n.redis_connection for n in nodes}
    ids = {n.name: raw[n.name].execute_command("CLUSTER MYID") for n in nodes}
    src, dst = raw[source.name], raw[target.name]
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source.name])
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target.name])
    while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
        src.execute_command("MIGRATE", target.host, target.port, "", 0, 5_000, "KEYS", *keys)
    for node in nodes:
        raw[node.name].execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target.name])
    assert raw[source.name].execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0
    assert int(raw[target.name].execute_command("CLUSTER COUNTKEYSINSLOT", slot)) > 0
