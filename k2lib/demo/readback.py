"""Reading results back from the live stack: the DLQ topic, the table's keys, open gaps.

The notebooks check what K2 did by reading what it wrote, never by trusting its counters.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from pyiceberg.table import Table

from k2lib.config import K2Settings
from k2lib.connect import redis_client
from k2lib.demo.workspace import Workspace
from k2lib.storage.table import stored_keys

__all__ = ["key_counts", "list_open_gaps", "read_dlq", "table_key_check"]

DLQ_READ_TIMEOUT_S = 15.0


def list_open_gaps(settings: K2Settings) -> list[dict[str, Any]]:
    """The open gaps the Redis sequence tracker holds for this topic (what `k2 gaps` lists)."""
    try:
        from k2lib.ingestion.sequence.gaps import list_gaps
    except ImportError:  # no sequence tracker in this build
        return []
    prefix = settings.sequence_prefix
    client = redis_client(settings)
    try:
        return list_gaps(client, prefix)
    finally:
        client.close()


def read_dlq(settings: K2Settings, expected: int | None = None) -> dict[str, int]:
    """Every message on the DLQ topic, counted by its `k2.reason` header."""
    consumer = Consumer(
        settings.kafka_config(
            **{
                "group.id": "k2-demo-dlq-reader",
                "enable.partition.eof": True,
                "enable.auto.commit": False,
            }
        )
    )
    consumer.assign([TopicPartition(settings.dlq_topic, 0, 0)])
    reasons: Counter[str] = Counter()
    deadline = time.monotonic() + DLQ_READ_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            eof = False
            for m in consumer.consume(1000, timeout=0.5):
                err = m.error()
                if err is None:
                    reason = dict(m.headers() or []).get("k2.reason") or b"?"
                    reasons[reason.decode() if isinstance(reason, bytes) else reason] += 1
                elif err.code() == KafkaError._PARTITION_EOF:
                    eof = True
            if eof and (expected is None or sum(reasons.values()) >= expected):
                break
    finally:
        consumer.close()
    return dict(sorted(reasons.items()))


def key_counts(table: Table) -> tuple[dict[str, int], dict[str, int]]:
    """Rows, distinct `(exchange, symbol, session, seq)` keys and rows stored twice; rows
    per `(exchange, symbol)`."""
    stored = stored_keys(table)
    keys = Counter(stored)
    per_key: Counter[str] = Counter(f"{e}:{s}" for e, s, *_ in keys)
    twice = sum(c - 1 for c in keys.values() if c > 1)
    counts = {"rows": len(stored), "unique_keys": len(keys), "duplicate_rows": twice}
    return counts, dict(sorted(per_key.items()))


def table_key_check(workspace: Workspace) -> tuple[dict[str, int], dict[str, int]]:
    """`key_counts` of the workspace's table, as of its latest snapshot."""
    workspace.table.refresh()
    return key_counts(workspace.table)
