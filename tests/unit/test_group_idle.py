"""`--until-idle` for a consumer-group member: it must not end while a member that died
still holds partitions the group will hand over once that member's session times out.

Kafka is the list twin in group mode (k2lib.testing); the table is a real pyiceberg
SqlCatalog on SQLite in tmp_path, counted raw.
"""

from __future__ import annotations

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from k2lib.clock import ManualClock
from k2lib.ingestion.consumer import GROUP_SETTLE_S
from k2lib.ingestion.pipeline import IngestConfig, IngestPipeline
from k2lib.storage.table import ensure_table, stored_keys
from k2lib.storage.writer import IcebergWriter
from k2lib.testing import ListDeadLetters, ListSource
from k2lib.wire.codec import encode_batch
from tests.helpers import symbol_trades

pytestmark = [pytest.mark.unit]

T0 = 1_750_000_000_000_000
POLL_S = 0.5  # each empty poll waits this long, as the real poll timeout does


def trades(seqs: range, symbol: str) -> list[bytes]:
    ts = [T0 + s for s in seqs]
    return encode_batch(symbol_trades(seqs, ts, symbol=symbol, price=100_000_000, qty=1_000))


class GroupTopic(ListSource):
    """Two partitions; the group hands this member partition 0 at once and partition 1
    only at `handover` (a dead member's session ran out, the group rebalanced)."""

    def __init__(self, clock: ManualClock, handover: float) -> None:
        super().__init__("t.trades", 2)
        self.clock, self.handover = clock, handover
        self.publish(0, trades(range(1, 101), "BTCUSDT"))
        self.publish(1, trades(range(1, 101), "ETHUSDT"))

    def poll(self, max_messages, timeout_s):
        now = self.clock()
        if self._listener is not None and not self.partitions:
            self.rebalance(assigned=[0])
        elif now >= self.handover and 1 not in self.partitions:
            self.rebalance(assigned=[1])
        got = super().poll(max_messages, timeout_s)
        if not len(got.values):
            self.clock.advance(POLL_S)
        return got


def pipeline(tmp_path, source: GroupTopic, clock: ManualClock) -> IngestPipeline:
    catalog = SqlCatalog(
        "t", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}/warehouse"
    )
    writer = IcebergWriter(ensure_table(catalog, "t.trades"), source.topic, partitions=[0, 1])
    return IngestPipeline(
        source=source,
        sink=writer,
        dlq=ListDeadLetters(),
        config=IngestConfig(group=True, commit_interval_s=0.2),
        clock=clock,
        sleep=clock.advance,
    )


@pytest.mark.parametrize("handover", [GROUP_SETTLE_S - 2.0, GROUP_SETTLE_S - 0.5])
def test_a_member_owning_some_partitions_waits_for_a_dead_members_partitions(tmp_path, handover):
    clock = ManualClock(1_000.0)
    source = GroupTopic(clock, handover=clock() + handover)
    p = pipeline(tmp_path, source, clock)
    summary = p.run(until_idle_s=1.0)
    assert summary["offsets"] == {"0": 100, "1": 100}
    assert len(stored_keys(p.table)) == 200


def test_a_member_owning_every_partition_ends_after_the_idle_time_alone(tmp_path):
    clock = ManualClock(1_000.0)
    source = GroupTopic(clock, handover=clock())  # both partitions at the first rebalance
    p = pipeline(tmp_path, source, clock)
    started = clock()
    p.run(until_idle_s=1.0)
    assert len(stored_keys(p.table)) == 200
    assert clock() - started < GROUP_SETTLE_S / 2
