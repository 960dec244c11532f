"""One pass over some partitions: `assign()` at given offsets, consume to the high watermark
that fetch responses report, decode with the ingest codec.

Why it looks like this (docs/decisions/006-hybrid-query-seam.md):

- `assign()`, never `subscribe()`: a query must see exactly the partitions it names. A
  shared group would split them between API workers, and a group join costs seconds.
- The end of a partition is the PARTITION_EOF event, which carries the high watermark of
  the fetch that hit it. Tansu's ListOffsets is wrong and `offsets_for_times` answers 0.
- A start beyond the high watermark means the broker lost data (an in-memory broker
  restarted). Tansu answers such a fetch with an empty batch and the true high watermark,
  so the cached watermark reveals it; a real Kafka raises OFFSET_OUT_OF_RANGE, which
  `auto.offset.reset=error` turns into an event. Either way the partition is `behind`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, TopicPartition

from k2lib.clock import Clock
from k2lib.config import K2Settings
from k2lib.errors import QueryError, ServiceError
from k2lib.wire.codec import decode_batch
from k2lib.wire.schema import TradeBatch

__all__ = [
    "OFFSET_BEGINNING",
    "Drained",
    "can_prove_behind",
    "combine",
    "drain",
    "new_consumer",
]

OFFSET_BEGINNING = -2
_NO_WATERMARK = -1001  # librdkafka: no fetch response yet
_EOF = KafkaError._PARTITION_EOF
_RESET = KafkaError._AUTO_OFFSET_RESET
_MISSING = (
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
)


@dataclass(frozen=True, kw_only=True)
class Drained:
    batch: TradeBatch  # every decoded record below its partition's end, offset order
    ends: dict[int, int]  # high watermark reached, per finished partition
    behind: dict[int, tuple[int, int]]  # {p: (start, hw)} with hw < start
    incomplete: list[int]  # not finished before the deadline
    records_read: int
    dlq_skipped: int


def new_consumer(settings: K2Settings, overrides: Mapping[str, Any]) -> Consumer:
    return Consumer(
        settings.kafka_config(
            **{
                # librdkafka wants a group.id even for assign(); unique, so never shared.
                "group.id": f"k2-query-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "error",
                # The fetch that finds nothing new is the one that proves the end: keep the
                # broker from holding it for the default 500 ms.
                "fetch.wait.max.ms": 1,
                "fetch.max.bytes": 64 << 20,
                "max.partition.fetch.bytes": 16 << 20,
                "log_level": 3,
                **overrides,
            }
        )
    )


def drain(
    consumer: Consumer,
    topic: str,
    start: Mapping[int, int],
    *,
    deadline: float,
    clock: Clock,
    poll_s: float,
    batch: int,
) -> Drained:
    """Consume `start`'s partitions to their ends (or `deadline`) and decode what came."""
    # Tansu's log starts at 0, and asking librdkafka for "beginning" costs a ListOffsets
    # round trip with a 500 ms backoff there; a retention-trimmed Kafka answers 0 with
    # OFFSET_OUT_OF_RANGE, handled below by seeking to the real beginning.
    from_start = {p for p, off in start.items() if off == OFFSET_BEGINNING}
    begin = {p: (0 if p in from_start else off) for p, off in start.items()}
    if begin:
        consumer.assign([TopicPartition(topic, p, off) for p, off in begin.items()])
    # A reused consumer still caches the watermark of its previous read; only a value the
    # fetches of this read changed can prove the broker is behind.
    stale = {p: _watermark(consumer, topic, p) for p in begin}
    pending = set(begin)
    ends: dict[int, int] = {}
    behind: dict[int, tuple[int, int]] = {}
    values: list[bytes | None] = []
    parts: list[Any] = []
    offsets: list[Any] = []
    while pending and clock() < deadline:
        msgs = consumer.consume(num_messages=batch, timeout=poll_s)
        events = [m for m in msgs if m.error() is not None]
        if events:
            msgs = [m for m in msgs if m.error() is None]
            for m in events:
                p, err = int(m.partition() or 0), m.error()
                assert err is not None  # filtered above
                if err.code() == _EOF:
                    ends[p] = int(m.offset() or 0)
                    pending.discard(p)
                elif err.code() == _RESET and p in from_start:
                    consumer.seek(TopicPartition(topic, p, OFFSET_BEGINNING))
                elif err.code() == _RESET and p in pending:
                    behind[p] = (begin[p], _watermark(consumer, topic, p))
                    pending.discard(p)
                elif err.code() in _MISSING:
                    raise QueryError(f"topic {topic!r} or its partition {p} does not exist")
                elif err.fatal():
                    raise ServiceError(f"reading {topic!r}: {err.str()}")
                # Other errors are transient: librdkafka retries them until the deadline.
        values += [m.value() for m in msgs]
        parts += [m.partition() for m in msgs]
        offsets += [m.offset() for m in msgs]
        for p in list(pending):
            hw = _watermark(consumer, topic, p)
            if p not in from_start and hw not in (_NO_WATERMARK, stale[p]) and hw < begin[p]:
                behind[p] = (begin[p], hw)
                pending.discard(p)
    return _decoded(values, parts, offsets, ends, behind, sorted(pending))


def can_prove_behind(consumer: Consumer, topic: str, start: Mapping[int, int]) -> bool:
    """False if this (reused) consumer remembers a watermark below a start offset: such a
    partition could be behind with no fetch ever changing that value, so the read could
    not tell a broker that lost data from a slow one. Use a fresh consumer then."""
    return all(
        off < 0 or (hw := _watermark(consumer, topic, p)) == _NO_WATERMARK or hw >= off
        for p, off in start.items()
    )


def _watermark(consumer: Consumer, topic: str, partition: int) -> int:
    _, hi = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
    return int(hi)


def _decoded(
    values: list[bytes | None],
    parts: list[Any],
    offsets: list[Any],
    ends: dict[int, int],
    behind: dict[int, tuple[int, int]],
    incomplete: list[int],
) -> Drained:
    decoded = decode_batch(values)
    idx = decoded.index
    out = decoded.batch.with_kafka(
        np.asarray(parts, np.int32)[idx], np.asarray(offsets, np.int64)[idx]
    )
    if ends and len(out):
        # Records fetched after a partition's EOF belong to a later answer, not this one.
        top = int(out.partition.max()) + 1
        limit = np.full(top, np.iinfo(np.int64).max, np.int64)
        for p, end in ends.items():
            if p < top:
                limit[p] = end
        out = out.take(out.offset < limit[out.partition])
    return Drained(
        batch=out,
        ends=ends,
        behind=behind,
        incomplete=incomplete,
        records_read=len(values),
        dlq_skipped=len(decoded.rejects),
    )


def combine(first: Drained, again: Drained, redone: set[int]) -> Drained:
    """`first` with the partitions in `redone` replaced by `again`'s reading of them."""
    keep = ~np.isin(first.batch.partition, np.fromiter(redone, np.int32))
    return Drained(
        batch=TradeBatch.concat([first.batch.take(keep), again.batch]),
        ends={**{p: e for p, e in first.ends.items() if p not in redone}, **again.ends},
        behind={**{p: b for p, b in first.behind.items() if p not in redone}, **again.behind},
        incomplete=sorted({p for p in first.incomplete if p not in redone} | set(again.incomplete)),
        records_read=first.records_read + again.records_read,
        dlq_skipped=first.dlq_skipped + again.dlq_skipped,
    )
