"""One raw group consumer: confluent-kafka `subscribe()` + `consume()` + `decode_batch`.

The baseline of `k2 bench ingest --workers N` is N of these processes in one consumer group,
reading the same backlog as N `k2 ingest` processes: the client's own 1 -> N scaling, with
nothing after the decode. Run as

    python -m k2lib.bench.raw_worker TOPIC GROUP IDLE_S

It prints one JSON line: records decoded, the wall-clock time (epoch seconds) of its first
assignment and of its last message, and the partitions it held at the end.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from k2lib.config import K2Settings
from k2lib.ingestion.consumer import CONSUMER_DEFAULTS, GROUP_DEFAULTS
from k2lib.wire.codec import decode_batch

__all__ = ["consume"]

POLL = 20_000  # K2's own consume() size
JOIN_TIMEOUT_S = 60.0


def consume(settings: K2Settings, group: str, idle_s: float) -> dict[str, Any]:
    """Consume and decode until `idle_s` pass without a message after the first assignment."""
    config = {
        **CONSUMER_DEFAULTS,
        **GROUP_DEFAULTS,
        "statistics.interval.ms": 0,
        # A partition that moves between members resumes where its last owner stopped, as
        # K2's resumes from the table: the group's committed offsets play the table's part.
        "enable.auto.commit": True,
        "enable.auto.offset.store": True,
        "auto.offset.reset": "earliest",
        "group.id": group,
    }
    consumer = Consumer(settings.kafka_config(**config))
    held: set[int] = set()
    first: list[float] = []

    def assigned(c: Any, tps: list[TopicPartition]) -> None:
        if not first:
            first.append(time.time())
        held.update(tp.partition for tp in tps)
        c.incremental_assign(tps)

    def revoked(c: Any, tps: list[TopicPartition]) -> None:
        # Nothing consumed yet on these partitions means nothing to hand over.
        with contextlib.suppress(KafkaException):
            c.commit(asynchronous=False)
        held.difference_update(tp.partition for tp in tps)
        c.incremental_unassign(tps)

    consumer.subscribe([settings.topic], on_assign=assigned, on_revoke=revoked, on_lost=revoked)
    started = time.monotonic()
    got, last, idle_since = 0, 0.0, None
    while True:
        msgs = consumer.consume(POLL, timeout=0.2)
        values = [m.value() for m in msgs if m.error() is None]
        if values:
            got += len(decode_batch(values).batch)
            last, idle_since = time.time(), None
            continue
        if not first:
            if time.monotonic() - started > JOIN_TIMEOUT_S:
                break
            continue
        idle_since = idle_since if idle_since is not None else time.monotonic()
        if time.monotonic() - idle_since >= idle_s:
            break
    partitions = sorted(held)  # before close(), which revokes them
    consumer.close()
    return {
        "consumed": got,
        "first_assigned_at": first[0] if first else None,
        "last_message_at": last or None,
        "partitions": partitions,
    }


def main(argv: list[str]) -> None:
    topic, group, idle_s = argv[0], argv[1], float(argv[2])
    settings = K2Settings.from_env().with_(topic=topic)
    print(json.dumps(consume(settings, group, idle_s)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
