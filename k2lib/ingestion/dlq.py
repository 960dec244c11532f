"""The dead-letter queue: a poison message goes to `<topic>.dlq` with its reason and bytes.

Delivery is confirmed, not assumed: every message is tracked until the broker acknowledges
it, and `flush()` returns only when all of them are acknowledged. A message the broker
refused is produced again by the next `flush()`. The pipeline calls `flush()` before each
Iceberg commit, so no offset is ever committed past a poison message that is in neither the
table nor the DLQ.

A flush that times out with messages still unacknowledged replaces the producer: the old one
is purged (its messages come back as refused, to be produced again) and a new one is made.
An idempotent producer whose broker lost its state (a restart of a broker that keeps its
log in memory, a wiped cluster) would otherwise retry its sequence until
`message.timeout.ms` (5 minutes), and every commit would wait for it.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import Producer

from k2lib.config import K2Settings
from k2lib.errors import ServiceError
from k2lib.wire.codec import Reject

__all__ = ["DeadLetterQueue", "DeadLetterSink"]

log = logging.getLogger("k2.ingest")

FLUSH_TIMEOUT_S = 30.0

_Message = tuple[bytes, list[tuple[str, str | bytes | None]]]


class DeadLetterSink(Protocol):
    """What the pipeline needs of a DLQ (a list-backed twin serves unit tests)."""

    def send(self, rejects: list[Reject], partitions: list[int], offsets: list[int]) -> None: ...
    def flush(self) -> None: ...


class DeadLetterQueue:
    """Headers carry the reason and the origin; the value is the original bytes."""

    def __init__(
        self, settings: K2Settings, *, producer_factory: Callable[[], Any] | None = None
    ) -> None:
        self.topic = settings.dlq_topic
        self.source_topic = settings.topic
        self._new_producer = producer_factory or (
            lambda: Producer(settings.kafka_config(**{"enable.idempotence": True, "linger.ms": 50}))
        )
        self.producer = self._new_producer()
        self.sent = 0
        self._lock = threading.Lock()
        self._pending: dict[int, _Message] = {}  # produced, not yet acknowledged
        self._tokens = itertools.count()
        self._failed: list[_Message] = []

    def send(self, rejects: list[Reject], partitions: list[int], offsets: list[int]) -> None:
        for rej, part, off in zip(rejects, partitions, offsets, strict=True):
            headers: list[tuple[str, str | bytes | None]] = [
                ("k2.reason", rej.reason.encode()),
                ("k2.source", f"{self.source_topic}/{part}@{off}".encode()),
            ]
            self._produce((rej.value, headers))
            self.sent += 1
        self.producer.poll(0)

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Return once every message sent is acknowledged; ServiceError otherwise (the
        caller must not commit offsets past them; the next flush sends the refused again)."""
        with self._lock:
            retry, self._failed = self._failed, []
        for message in retry:
            self._produce(message)
        self.producer.flush(timeout_s)
        with self._lock:
            outstanding, failed = len(self._pending), len(self._failed)
        if outstanding:
            self._replace_producer()
        if outstanding or failed:
            raise ServiceError(
                f"DLQ {self.topic}: {outstanding} messages unacknowledged and {failed} "
                f"refused after {timeout_s}s; offsets stay uncommitted"
            )

    def _replace_producer(self) -> None:
        """Give up on the stuck producer: its unacknowledged messages count as refused (the
        next flush produces them again, through a new producer), and what it reports later
        is ignored. A message it did deliver may so reach the DLQ twice, never zero times."""
        old, self.producer = self.producer, self._new_producer()
        with self._lock:
            self._failed.extend(self._pending.values())
            self._pending.clear()
            count = len(self._failed)
        log.warning("DLQ %s: producer replaced, %d messages to produce again", self.topic, count)
        old.purge(in_queue=True, in_flight=True, blocking=False)
        old.poll(0)

    def _produce(self, message: _Message) -> None:
        value, headers = message
        token = next(self._tokens)

        def delivered(err: Any, msg: Any) -> None:
            with self._lock:
                if self._pending.pop(token, None) is not None and err is not None:
                    self._failed.append(message)

        with self._lock:
            self._pending[token] = message
        for _ in range(3):
            try:
                self.producer.produce(
                    self.topic, value=value, headers=headers, on_delivery=delivered
                )
                return
            except BufferError:
                self.producer.poll(1.0)  # the local queue is full: serve callbacks, retry
            except Exception:
                break
        with self._lock:  # not queued: the next flush produces it again
            if self._pending.pop(token, None) is not None:
                self._failed.append(message)
