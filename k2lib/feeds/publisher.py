"""Publishing to Kafka: keyed `exchange:symbol`, Java-compatible partitioning, idempotent.

`replay()` drives a source through optional fault injection into the topic, at an
optional rate, and returns the run's summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer

from k2lib.config import K2Settings
from k2lib.errors import ServiceError
from k2lib.feeds.base import FeedSource
from k2lib.feeds.faults import FaultInjector, FaultSpec

__all__ = ["PublisherConfig", "TradePublisher", "replay"]

PRODUCER_DEFAULTS = {
    "enable.idempotence": True,
    "partitioner": "murmur2_random",  # Java's partitioner: keys land where readers expect
    # Big record batches: the broker serves fetches by batch, so consumers read faster.
    "linger.ms": 50,
    "batch.num.messages": 100_000,
    "batch.size": 8_000_000,
    "queue.buffering.max.messages": 2_000_000,
    "queue.buffering.max.kbytes": 2_097_152,
}
FLUSH_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True)
class PublisherConfig:
    topic: str
    rate: float | None = None  # messages per second; None = as fast as the broker takes
    chunk: int = 20_000


class TradePublisher:
    """A thin, batched producer. Delivery errors are counted, never ignored."""

    def __init__(self, settings: K2Settings, **overrides: Any) -> None:
        self.producer = Producer(settings.kafka_config(**{**PRODUCER_DEFAULTS, **overrides}))
        self.delivered = 0
        self.errors: list[str] = []

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        elif len(self.errors) < 20:
            self.errors.append(str(err))
        else:
            self.errors.append("...")

    def publish(self, topic: str, keys: list[bytes], values: list[bytes]) -> None:
        messages = [{"key": k, "value": v} for k, v in zip(keys, values, strict=True)]
        while messages:
            try:
                queued = self.producer.produce_batch(topic, messages, on_delivery=self._on_delivery)
            except BufferError:
                queued = 0
            failed = [m for m in messages if "_error" in m]
            if queued == len(messages):
                break
            # Queue full: serve delivery reports, then retry what did not go in.
            self.producer.poll(0.05)
            messages = [{"key": m["key"], "value": m["value"]} for m in failed]
        self.producer.poll(0)

    def flush(self) -> None:
        remaining = self.producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            raise ServiceError(f"{remaining} messages still undelivered after {FLUSH_TIMEOUT_S}s")
        if self.errors:
            raise ServiceError(f"delivery failed: {self.errors[:3]}")


def replay(
    source: FeedSource,
    settings: K2Settings,
    *,
    rate: float | None = None,
    faults: FaultSpec | None = None,
    seed: int = 0,
    truth_path: Path | None = None,
    progress: Callable[[int], object] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Publish every record of `source` to `settings.topic`; return the summary."""
    injector = FaultInjector(faults or FaultSpec(), seed)
    publisher = TradePublisher(settings)
    chunk = 2_000 if rate else 20_000
    started = clock()
    sent = 0
    try:
        for batch in source.batches(chunk):
            keys, values = injector.apply(batch)
            publisher.publish(settings.topic, keys, values)
            sent += len(values)
            if progress:
                progress(len(values))
            if rate:  # pace by the total sent so far, so rounding never accumulates
                ahead = sent / rate - (clock() - started)
                if ahead > 0:
                    sleep(ahead)
        publisher.flush()
    except KafkaException as exc:
        raise ServiceError(f"broker at {settings.kafka_bootstrap} refused: {exc}") from exc
    elapsed = max(clock() - started, 1e-9)
    truth = injector.truth
    if truth_path is not None:
        truth.write(truth_path)
    return {
        "source": source.name,
        "topic": settings.topic,
        "published": sent,
        "delivered": publisher.delivered,
        "records": truth.records,
        "malformed_rows": source.report.malformed,
        "malformed_reasons": source.report.reasons[:5],
        "faults": {
            "duplicates": sum(truth.duplicates.values()),
            "gaps": len(truth.gaps()),
            "dropped": sum(len(v) for v in truth.dropped.values()),
            "reordered": truth.reordered,
            "poison": truth.poison,
            "resets": truth.resets,
        },
        "truth": str(truth_path) if truth_path else None,
        "elapsed_s": round(elapsed, 3),
        "rate_msg_s": round(sent / elapsed, 1),
    }
