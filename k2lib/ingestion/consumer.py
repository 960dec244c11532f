"""The Kafka side of ingest: assign partitions at the offsets Iceberg recorded, poll in bulk.

K2 resumes from the snapshot, not from group offsets: the snapshot is committed atomically
with the rows, so it is the only position that can never run ahead of or behind the table.
Group offsets are still committed afterwards, for lag monitoring by standard tools.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from k2lib.config import K2Settings
from k2lib.errors import ServiceError
from k2lib.stack.services import topic_partitions

__all__ = ["Poll", "TradeConsumer"]

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


@dataclass
class Poll:
    """One poll: the message values and where each came from."""

    values: list[bytes | None]
    partitions: np.ndarray
    offsets: np.ndarray
    reset_partitions: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)


class TradeConsumer:
    def __init__(
        self,
        settings: K2Settings,
        *,
        group_id: str = "k2-ingest",
        partitions: Iterable[int] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = settings.topic
        n = topic_partitions(settings, self.topic)
        self.partitions = sorted(partitions) if partitions is not None else list(range(n))
        self.lag_from_stats: dict[int, int] = {}
        self.consumer = Consumer(
            settings.kafka_config(
                **CONSUMER_DEFAULTS, **{"group.id": group_id, "stats_cb": self._on_stats}
            )
        )
        self.high_watermarks: dict[int, int] = {}
        self.positions: dict[int, int] = {}
        self.resets: list[int] = []

    def assign(self, start: Mapping[int, int]) -> None:
        """Start each partition at `start[p]` (the next offset to read), else the beginning."""
        tps = [
            TopicPartition(self.topic, p, int(start.get(p, OFFSET_BEGINNING)))
            for p in self.partitions
        ]
        self.positions = {p: int(start.get(p, 0)) for p in self.partitions}
        self.consumer.assign(tps)

    def poll(self, max_messages: int, timeout_s: float) -> Poll:
        msgs = self.consumer.consume(num_messages=max_messages, timeout=timeout_s)
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
        log.warning(
            "partition %d: recorded offset is past the broker's end (%s); the broker "
            "was reset, reading it again from the beginning",
            partition,
            err.str(),
        )
        self.resets.append(partition)
        self.positions[partition] = 0
        self.consumer.incremental_unassign([TopicPartition(self.topic, partition)])
        self.consumer.incremental_assign([TopicPartition(self.topic, partition, 0)])
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
        """Group offsets, for monitoring only (the snapshot is the resume point)."""
        if offsets:
            tps = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
            try:
                self.consumer.commit(offsets=tps, asynchronous=False)
            except Exception as exc:  # monitoring aid: never fail a run over it
                log.warning("group offset commit failed: %s", exc)

    def pause(self) -> None:
        self.consumer.pause(self.consumer.assignment())

    def resume(self) -> None:
        self.consumer.resume(self.consumer.assignment())

    def close(self) -> None:
        self.consumer.close()
