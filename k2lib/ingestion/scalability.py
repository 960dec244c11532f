"""Builders for the Redis-backed stages (sequence tracker, deduplicator, status)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from k2lib.config import K2Settings
from k2lib.stack.services import redis_client

__all__ = [
    "broker_probe",
    "build_dedup",
    "build_ledger",
    "build_tracker",
    "redis_probe",
    "status_publisher",
]

BROKER_PROBE_TIMEOUT_S = 0.5

STATUS_TTL_S = 30


def build_tracker(settings: K2Settings, registry: CollectorRegistry) -> Any:
    """The Redis sequence tracker (state shared by every consumer of the feed)."""
    from k2lib.ingestion.sequence.redis import RedisSequenceTracker

    return RedisSequenceTracker(
        redis_client(settings), prefix=settings.sequence_prefix, registry=registry
    )


def build_dedup(settings: K2Settings, registry: CollectorRegistry) -> Any:
    """The commit-aligned two-tier deduplicator, its Bloom filter warmed from Redis."""
    from k2lib.ingestion.dedup import CommitAlignedDeduplicator, RedisDedupStore

    store = RedisDedupStore(redis_client(settings), prefix=settings.dedup_prefix)
    dedup = CommitAlignedDeduplicator(store, registry=registry)
    dedup.warm()
    return dedup


def build_ledger(settings: K2Settings) -> Any:
    """The ledger that ties the Redis state of this topic and table to the table."""
    from k2lib.ingestion.state import StateLedger

    return StateLedger(
        redis_client(settings),
        prefix=settings.redis_prefix,
        prefixes=(settings.dedup_prefix, settings.sequence_prefix),
    )


def redis_probe(settings: K2Settings) -> Callable[[], Any]:
    """A cheap call that tells a half-open Redis breaker whether Redis is back."""
    client = redis_client(settings, socket_timeout=0.5, socket_connect_timeout=0.5)
    return client.ping


def broker_probe(settings: K2Settings) -> Callable[[], Any]:
    """A cheap metadata request, bounded: a frozen or stopped broker fails it, and the
    broker breaker opens (CIRCUIT_BREAK); once it answers again the breaker closes."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from k2lib.errors import ServiceError

    admin = AdminClient(settings.kafka_config())

    def probe() -> None:
        try:
            admin.list_topics(settings.topic, timeout=BROKER_PROBE_TIMEOUT_S)
        except KafkaException as exc:
            raise ServiceError(f"broker {settings.kafka_bootstrap}: {exc}") from exc

    return probe


def status_publisher(settings: K2Settings) -> Callable[[dict[str, Any]], None]:
    """Publish the degradation status to Redis for the API (`GET /v1/degradation`)."""
    client = redis_client(settings, socket_timeout=0.5, socket_connect_timeout=0.5)

    def publish(status: dict[str, Any]) -> None:
        client.set(settings.status_key, json.dumps(status, default=str), ex=STATUS_TTL_S)

    return publish
