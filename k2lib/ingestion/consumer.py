"""The Kafka side of ingest: assign partitions at the offsets Iceberg recorded, poll in bulk.

K2 resumes from the snapshot, not from group offsets: the snapshot is committed atomically
with the rows, so it is the only position that can never run ahead of or behind the table.
Group offsets are still committed afterwards, for lag monitoring by standard tools.

A partition whose position is out of the broker's range (trimmed by retention below it,
or a wiped broker whose log ends before it) is read again from the earliest offset the
broker holds, and reported in `resets`. A broker wiped in the middle of a run can go
unseen, because Tansu answers a fetch past the end with an empty batch: `topic_recreated()`
is the check for it, and `rewind()` acts on what it finds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from k2lib.config import K2Settings
from k2lib.connect import topic_partitions
from k2lib.errors import ServiceError

__all__ = ["GROUP_SETTLE_S", "Poll", "RebalanceListener", "TopicChange", "TradeConsumer"]

log = logging.getLogger("k2.ingest")

CONSUMER_DEFAULTS = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    # An offset past the end means the (memory) broker was wiped: we want to know, not to
    # be silently moved, so the reset surfaces as an error we handle and report.
    "auto.offset.reset": "error",
    "enable.partition.eof": False,  # EOF events slow consume() on Tansu (ADR 009)
    "fetch.max.bytes": 64 * 1024 * 1024,
    "max.partition.fetch.bytes": 16 * 1024 * 1024,
    "queued.max.messages.kbytes": 262_144,
    "queued.min.messages": 1_000_000,
    "fetch.wait.max.ms": 10,
    "session.timeout.ms": 6_000,
    "statistics.interval.ms": 1_000,
}
# Group members: cooperative-sticky moves only the partitions that must move. A join on
# Tansu takes about session.timeout.ms / 2 (measured: 3.0 s at 6 s, 2.0 s at 3 s).
_HEARTBEAT_MS = 1_000
GROUP_DEFAULTS = {
    "partition.assignment.strategy": "cooperative-sticky",
    "heartbeat.interval.ms": _HEARTBEAT_MS,
}
# A member that died keeps its partitions until its session times out; the survivors hear
# of the rebalance at their next heartbeat and rejoin (a join: session / 2 on Tansu).
_SESSION_S = CONSUMER_DEFAULTS["session.timeout.ms"] / 1000  # type: ignore[operator]
GROUP_SETTLE_S = _SESSION_S * 1.5 + 2 * _HEARTBEAT_MS / 1000
# Bounds one topic-id lookup; it takes about 0.5 ms on the local broker.
TOPIC_CHECK_TIMEOUT_S = 2.0


@dataclass
class Poll:
    """One poll: the message values and where each came from."""

    values: list[bytes | None]
    partitions: np.ndarray
    offsets: np.ndarray
    reset_partitions: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True, kw_only=True)
class TopicChange:
    """What `topic_recreated()` found: the partitions whose log is not the one we read.

    `new_id != old_id`: the topic was deleted and created again (its offsets restart at
    0), and every partition is listed. Otherwise the ids agree or are unknown, and
    `watermarks` holds the partitions whose high watermark went below our position.
    """

    old_id: str | None
    new_id: str | None
    partitions: tuple[int, ...]
    watermarks: Mapping[int, int] = field(default_factory=dict)  # {p: hw below position}

    @property
    def recreated(self) -> bool:
        return self.old_id is not None and self.new_id is not None and self.old_id != self.new_id


class RebalanceListener(Protocol):
    """Told of every change of this member's partitions, inside `poll`."""

    def assigned(self, partitions: list[int]) -> Mapping[int, int]:
        """New partitions: where each starts (the offsets the table records)."""
        ...

    def revoked(self, partitions: list[int]) -> None:
        """Partitions leaving: commit or drop what is buffered for them, now."""
        ...


class TradeConsumer:
    """`client` and `topic_ids` replace the Kafka consumer factory and the topic-id lookup
    (tests drive them with in-process twins); `partitions` then avoids the metadata call."""

    def __init__(
        self,
        settings: K2Settings,
        *,
        group_id: str = "k2-ingest",
        partitions: Iterable[int] | None = None,
        client: Callable[[], Any] | None = None,
        topic_ids: Callable[[], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = settings.topic
        if partitions is None:
            partitions = range(topic_partitions(settings, self.topic))
        self.partitions = sorted(partitions)
        self.lag_from_stats: dict[int, int] = {}
        config = settings.kafka_config(
            **CONSUMER_DEFAULTS, **{"group.id": group_id, "stats_cb": self._on_stats}
        )
        self._new_client = client or (lambda: Consumer(config))
        self._topic_ids = topic_ids or self._describe_topic_id
        self._admin: AdminClient | None = None
        self.consumer = self._new_client()
        self.high_watermarks: dict[int, int] = {}
        self.positions: dict[int, int] = {}
        self.resets: list[int] = []
        self.group_config = {**config, **GROUP_DEFAULTS}
        self._listener: RebalanceListener | None = None
        self._seeks: dict[int, int] = {}
        self.rebalances = 0
        # The broker's id for the topic when we started: a recreated topic has another.
        self.topic_id = self._topic_ids()

    def subscribe(self, listener: RebalanceListener) -> None:
        """Join the consumer group instead of reading every partition: partitions come and
        go with the members, and `listener` says where each one starts (the table)."""
        self.consumer.close()
        self.consumer = Consumer(self.group_config)
        self.partitions, self.positions = [], {}
        self._listener = listener
        self.consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    def _on_assign(self, consumer: Any, tps: list[TopicPartition]) -> None:
        assert self._listener is not None
        new = sorted(tp.partition for tp in tps)
        self.rebalances += 1
        start = self._listener.assigned(new)
        self.partitions = sorted(set(self.partitions) | set(new))
        self.positions.update({p: int(start.get(p, 0)) for p in new})
        consumer.incremental_assign(
            [TopicPartition(self.topic, p, int(start.get(p, OFFSET_BEGINNING))) for p in new]
        )

    def _on_revoke(self, consumer: Any, tps: list[TopicPartition]) -> None:
        assert self._listener is not None
        gone = sorted(tp.partition for tp in tps)
        self.rebalances += 1
        self._listener.revoked(gone)
        self.partitions = [p for p in self.partitions if p not in gone]
        for p in gone:
            self._seeks.pop(p, None)
            self._forget(p)
        consumer.incremental_unassign(tps)

    def assign(self, start: Mapping[int, int]) -> None:
        """Start each partition at `start[p]` (the next offset to read), else the beginning.

        A group member seeks the partitions it owns instead (the group assigns them)."""
        if self._listener is not None:
            self.positions = {p: int(start.get(p, 0)) for p in self.partitions}
            for p in self.partitions:
                self.consumer.seek(
                    TopicPartition(self.topic, p, int(start.get(p, OFFSET_BEGINNING)))
                )
            return
        tps = [
            TopicPartition(self.topic, p, int(start.get(p, OFFSET_BEGINNING)))
            for p in self.partitions
        ]
        self.positions = {p: int(start.get(p, 0)) for p in self.partitions}
        self.consumer.assign(tps)

    def topic_recreated(self) -> TopicChange | None:
        """Has the log under us changed since we started? None when it has not.

        Cheap and bounded, so the pipeline can call it once per commit: one topic-id lookup
        (at most TOPIC_CHECK_TIMEOUT_S; 0.5 ms locally) and the watermarks librdkafka
        cached from fetch responses (no request). It finds
        - a topic deleted and created again, by its broker id (`change.recreated`);
        - a partition whose high watermark fell below our position (a broker without
          topic ids that lost data), as Tansu answers a fetch past the end with an empty
          batch and its true watermark instead of an error.
        It changes nothing: act on the answer with `rewind(change)`. A failed lookup (the
        broker unreachable, or the topic not created again yet) counts as no change.
        """
        current = self._topic_ids()
        change = TopicChange(
            old_id=self.topic_id, new_id=current, partitions=tuple(self.partitions)
        )
        if change.recreated:
            return change
        shrunk: dict[int, int] = {}
        for p in self.partitions:
            _, hw = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
            if 0 <= hw < self.positions.get(p, 0):
                shrunk[p] = int(hw)
        if not shrunk:
            return None
        return TopicChange(
            old_id=self.topic_id,
            new_id=self.topic_id,
            partitions=tuple(sorted(shrunk)),
            watermarks=shrunk,
        )

    def _seek(self, partition: int, offset: int) -> None:
        tp = TopicPartition(self.topic, partition, offset)
        try:
            self.consumer.seek(tp)
        except KafkaException:  # not fetching yet: assigning again sets the position
            self.consumer.incremental_unassign([TopicPartition(self.topic, partition)])
            self.consumer.incremental_assign([tp])

    def rewind(self, change: TopicChange) -> None:
        """Read `change.partitions` again from the earliest offset the broker holds, keep
        the others where they are, and take `change.new_id` as the topic's id.

        The Kafka client is replaced, not re-assigned: librdkafka 2.16 crashed reusing a
        client across a topic's recreation on Tansu, and closing it was safe. The
        partitions are added to `resets`; the caller resets their next offsets to 0.
        """
        log.warning(
            "topic %s: %s; reading partitions %s again from the beginning",
            self.topic,
            f"recreated on the broker (id {change.old_id} -> {change.new_id})"
            if change.recreated
            else f"high watermarks below our position {dict(change.watermarks)}",
            list(change.partitions),
        )
        start = {p: o for p, o in self.positions.items() if p not in change.partitions}
        if self._listener is None:
            old, self.consumer = self.consumer, self._new_client()
            old.close()
        # (A group member keeps its membership and seeks instead.)
        self.assign(start)
        for p in change.partitions:
            self._forget(p)
        self.resets.extend(change.partitions)
        self.topic_id = change.new_id if change.new_id is not None else self.topic_id

    def _forget(self, partition: int) -> None:
        # What we knew of the old log would keep its lag up (the watermarks only grow).
        self.positions[partition] = 0
        self.high_watermarks.pop(partition, None)
        self.lag_from_stats.pop(partition, None)

    def _describe_topic_id(self) -> str | None:
        if self._admin is None:
            self._admin = AdminClient(self.settings.kafka_config())
        try:
            found = self._admin.describe_topics(
                TopicCollection([self.topic]), request_timeout=TOPIC_CHECK_TIMEOUT_S
            )
            uid = found[self.topic].result(timeout=TOPIC_CHECK_TIMEOUT_S + 1).topic_id
        except Exception as exc:  # unreachable, or deleted and not created again yet
            log.debug("topic id of %s not known: %s", self.topic, exc)
            return None
        if uid is None or (uid.get_most_significant_bits() | uid.get_least_significant_bits()) == 0:
            return None  # a broker without topic ids
        return str(uid)

    def poll(self, max_messages: int, timeout_s: float) -> Poll:
        msgs = self.consumer.consume(num_messages=max_messages, timeout=timeout_s)
        if self._seeks:
            # A group member rewound: every partition it owns starts again from the table,
            # so what was fetched before is read again, not used.
            seeks, self._seeks = self._seeks, {}
            for p, offset in seeks.items():
                self._seek(p, offset)
            msgs = []
        resets: list[int] = []
        # Errors (EOF markers, resets) are rare: one cheap pass finds them, and the three
        # column passes below stay free of per-message branching.
        if any(m.error() is not None for m in msgs):
            msgs = [m for m in msgs if self._handle_error(m, resets)]
        values: list[bytes | None] = [m.value() for m in msgs]
        parts = [m.partition() for m in msgs]
        offs = [m.offset() for m in msgs]
        if offs:
            p_arr = np.asarray(parts, np.int32)
            o_arr = np.asarray(offs, np.int64)
            for p in np.unique(p_arr).tolist():
                self.positions[p] = int(o_arr[p_arr == p].max()) + 1
        else:
            p_arr, o_arr = np.zeros(0, np.int32), np.zeros(0, np.int64)
        return Poll(values, p_arr, o_arr, resets)

    def _handle_error(self, m: Any, resets: list[int]) -> bool:
        """True for a real message; EOF and reset markers are consumed here."""
        err = m.error()
        if err is None:
            return True
        if err.code() == KafkaError._PARTITION_EOF:
            self.high_watermarks[m.partition()] = m.offset()
        elif err.code() == KafkaError._AUTO_OFFSET_RESET:
            resets.append(self._restart_partition(m.partition() or 0, err))
        elif err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise ServiceError(f"topic {self.topic!r} is gone from the broker: {err}")
        else:
            log.warning("consumer error: %s", err)
        return False

    def _restart_partition(self, partition: int, err: KafkaError) -> int:
        # Out of range either way: below the log start (retention trimmed what we had not
        # read: those records are gone) or past its end (the broker was wiped). Literal
        # offset 0 would be out of range again in the first case, and loop for ever.
        log.warning(
            "partition %d: offset %d is out of the broker's range (%s): retention trimmed "
            "the log below it, or the broker was reset; reading again from the earliest "
            "offset the broker holds",
            partition,
            self.positions.get(partition, 0),
            err.str(),
        )
        self.resets.append(partition)
        self._forget(partition)
        self.consumer.incremental_unassign([TopicPartition(self.topic, partition)])
        self.consumer.incremental_assign([TopicPartition(self.topic, partition, OFFSET_BEGINNING)])
        return partition

    def lag(self) -> int:
        """Messages behind, from fetch responses only (Tansu's ListOffsets is wrong).

        The high watermark is the newer of librdkafka's stats `hi_offset` and the watermark
        it cached from the last fetch response (partition-EOF events are off: ADR 009).
        """
        total = 0
        for p in self.partitions:
            _, cached = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), cached=True
            )
            hw = max(self.high_watermarks.get(p, -1), cached)
            if hw >= 0:
                total += max(0, hw - self.positions.get(p, 0))
            else:
                total += self.lag_from_stats.get(p, 0)
        return total

    def _on_stats(self, raw: str) -> None:
        try:
            parts = json.loads(raw)["topics"][self.topic]["partitions"]
        except (KeyError, ValueError):
            return
        for p, info in parts.items():
            if p != "-1" and info.get("consumer_lag", -1) >= 0:
                self.lag_from_stats[int(p)] = int(info["consumer_lag"])
                if info.get("hi_offset", -1) >= 0:
                    hw = int(info["hi_offset"])
                    self.high_watermarks[int(p)] = max(self.high_watermarks.get(int(p), 0), hw)

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Group offsets, for monitoring only (the snapshot is the resume point), sent
        asynchronously: a stalled broker must not stall the loop that notices it."""
        if offsets:
            tps = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
            try:
                self.consumer.commit(offsets=tps, asynchronous=True)
            except Exception as exc:  # monitoring aid: never fail a run over it
                log.warning("group offset commit failed: %s", exc)

    def close(self) -> None:
        self.consumer.close()
