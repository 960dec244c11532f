"""The dead-letter queue: a poison message goes to `<topic>.dlq` with its reason and bytes."""

from __future__ import annotations

from confluent_kafka import Producer

from k2lib.config import K2Settings
from k2lib.errors import ServiceError
from k2lib.wire.codec import Reject

__all__ = ["DeadLetterQueue"]

FLUSH_TIMEOUT_S = 30.0


class DeadLetterQueue:
    """Headers carry the reason and the origin; the value is the original bytes."""

    def __init__(self, settings: K2Settings) -> None:
        self.topic = settings.dlq_topic
        self.source_topic = settings.topic
        self.producer = Producer(
            settings.kafka_config(**{"enable.idempotence": True, "linger.ms": 50})
        )
        self.sent = 0

    def send(self, rejects: list[Reject], partitions: list[int], offsets: list[int]) -> None:
        for rej, part, off in zip(rejects, partitions, offsets, strict=True):
            self.producer.produce(
                self.topic,
                value=rej.value,
                headers=[
                    ("k2.reason", rej.reason.encode()),
                    ("k2.source", f"{self.source_topic}/{part}@{off}".encode()),
                ],
            )
            self.sent += 1
        self.producer.poll(0)

    def flush(self) -> None:
        """Before the Iceberg commit: a poison message is never skipped and forgotten."""
        if self.producer.flush(FLUSH_TIMEOUT_S):
            raise ServiceError(f"DLQ {self.topic}: messages undelivered after {FLUSH_TIMEOUT_S}s")
