"""TradeConsumer's resets without a broker: an in-process twin of the librdkafka client
drives a partition out of range, a recreated topic and a watermark that went backwards."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from k2lib.config import K2Settings
from k2lib.ingestion.consumer import TopicChange, TradeConsumer

pytestmark = pytest.mark.unit

PARTITIONS = (0, 1, 2)


class TwinMessage:
    def __init__(self, partition: int, offset: int, err: KafkaError | None = None) -> None:
        self._p, self._o, self._err = partition, offset, err

    def error(self) -> KafkaError | None:
        return self._err

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return b"v"


class TwinClient:
    """The calls TradeConsumer makes on a confluent_kafka.Consumer, recorded."""

    def __init__(self) -> None:
        self.assigned: dict[int, int] = {}
        self.calls: list[tuple[str, list[tuple[int, int]]]] = []
        self.queue: list[TwinMessage] = []
        self.watermarks: dict[int, int] = {}
        self.closed = False

    def _record(self, name: str, tps: list[TopicPartition]) -> None:
        self.calls.append((name, [(tp.partition, tp.offset) for tp in tps]))

    def assign(self, tps: list[TopicPartition]) -> None:
        self._record("assign", tps)
        self.assigned = {tp.partition: tp.offset for tp in tps}

    def incremental_assign(self, tps: list[TopicPartition]) -> None:
        self._record("incremental_assign", tps)
        self.assigned.update({tp.partition: tp.offset for tp in tps})

    def incremental_unassign(self, tps: list[TopicPartition]) -> None:
        self._record("incremental_unassign", tps)
        for tp in tps:
            self.assigned.pop(tp.partition, None)

    def consume(self, num_messages: int, timeout: float) -> list[TwinMessage]:
        out, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        return out

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached, "ListOffsets is wrong on Tansu: only cached watermarks are used"
        return -1001, self.watermarks.get(tp.partition, -1001)

    def close(self) -> None:
        self.closed = True


class Twins:
    def __init__(self) -> None:
        self.clients: list[TwinClient] = []
        self.topic_id: str | None = "id-1"

    def new_client(self) -> Any:
        self.clients.append(TwinClient())
        return self.clients[-1]


@pytest.fixture
def twins() -> Twins:
    return Twins()


def consumer_for(tmp_path: Path, twins: Twins) -> TradeConsumer:
    return TradeConsumer(
        K2Settings(home=tmp_path, topic="t"),
        partitions=PARTITIONS,
        client=twins.new_client,
        topic_ids=lambda: twins.topic_id,
    )


def test_out_of_range_partition_restarts_at_the_earliest_offset(
    tmp_path: Path, twins: Twins, caplog: pytest.LogCaptureFixture
) -> None:
    # Retention trimmed partition 1 below the recorded offset: offset 0 is out of range
    # too, so only "the earliest the broker holds" can end the reset.
    consumer = consumer_for(tmp_path, twins)
    consumer.assign({0: 10, 1: 500, 2: 7})
    client = twins.clients[0]
    reset = KafkaError(KafkaError._AUTO_OFFSET_RESET, "fetch offset 500 out of range")
    client.queue = [TwinMessage(0, 10), TwinMessage(1, 500, reset), TwinMessage(0, 11)]
    with caplog.at_level(logging.WARNING, logger="k2.ingest"):
        poll = consumer.poll(100, 0.1)
    assert poll.reset_partitions == [1] and consumer.resets == [1]
    assert poll.offsets.tolist() == [10, 11] and poll.partitions.tolist() == [0, 0]
    assert client.calls[-1] == ("incremental_assign", [(1, OFFSET_BEGINNING)])
    assert client.assigned == {0: 10, 2: 7, 1: OFFSET_BEGINNING}
    assert consumer.positions == {0: 12, 1: 0, 2: 7}
    assert "partition 1: offset 500 is out of the broker's range" in caplog.text
    assert "retention" in caplog.text


def test_an_unchanged_topic_reports_nothing(tmp_path: Path, twins: Twins) -> None:
    consumer = consumer_for(tmp_path, twins)
    consumer.assign({0: 10, 1: 20})
    twins.clients[0].watermarks = {0: 10, 1: 25}  # partition 2: no fetch response yet
    assert consumer.topic_recreated() is None
    twins.topic_id = None  # the lookup failed: no evidence of a change
    assert consumer.topic_recreated() is None


def test_a_recreated_topic_is_found_and_rewound(tmp_path: Path, twins: Twins) -> None:
    consumer = consumer_for(tmp_path, twins)
    consumer.assign({0: 10, 1: 20, 2: 30})
    consumer.high_watermarks = {0: 10, 1: 20, 2: 30}
    old_client = twins.clients[0]
    old_client.watermarks = {0: 40, 1: 40, 2: 40}  # re-published past us: hw cannot tell
    twins.topic_id = "id-2"
    change = consumer.topic_recreated()
    assert change == TopicChange(old_id="id-1", new_id="id-2", partitions=PARTITIONS)
    assert change.recreated
    assert consumer.topic_recreated() == change  # only rewind() acts on it
    consumer.rewind(change)
    new_client = twins.clients[-1]
    assert old_client.closed and new_client is not old_client
    assert new_client.assigned == dict.fromkeys(PARTITIONS, OFFSET_BEGINNING)
    assert consumer.resets == list(PARTITIONS) and consumer.topic_id == "id-2"
    assert consumer.positions == dict.fromkeys(PARTITIONS, 0)
    assert consumer.high_watermarks == {} and consumer.lag() == 0
    assert consumer.topic_recreated() is None


def test_a_watermark_below_our_position_rewinds_that_partition_only(
    tmp_path: Path, twins: Twins
) -> None:
    # A broker without topic ids that lost data: the fetch past the end is empty and
    # carries the true (lower) high watermark.
    twins.topic_id = None
    consumer = consumer_for(tmp_path, twins)
    consumer.assign({0: 10, 1: 20, 2: 30})
    twins.clients[0].watermarks = {0: 12, 1: 3, 2: 30}
    change = consumer.topic_recreated()
    assert change is not None and not change.recreated
    assert change.partitions == (1,) and dict(change.watermarks) == {1: 3}
    consumer.rewind(change)
    assert twins.clients[-1].assigned == {0: 10, 1: OFFSET_BEGINNING, 2: 30}
    assert consumer.resets == [1] and consumer.positions == {0: 10, 1: 0, 2: 30}
