"""Builders for the Redis-backed stages (sequence tracker, deduplicator, status)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from k2lib.config import K2Settings
from k2lib.stack.services import redis_client

__all__ = ["build_dedup", "build_tracker", "redis_probe", "status_publisher"]

STATUS_KEY = "k2:degradation"
STATUS_TTL_S = 30


def build_tracker(settings: K2Settings, registry: CollectorRegistry) -> Any:
    return None


def build_dedup(settings: K2Settings, registry: CollectorRegistry) -> Any:
    return None


def redis_probe(settings: K2Settings) -> Callable[[], Any]:
    """A cheap call that tells a half-open Redis breaker whether Redis is back."""
    client = redis_client(settings, socket_timeout=0.5, socket_connect_timeout=0.5)
    return client.ping


def status_publisher(settings: K2Settings) -> Callable[[dict[str, Any]], None]:
    """Publish the degradation status to Redis for the API (`GET /v1/degradation`)."""
    client = redis_client(settings, socket_timeout=0.5, socket_connect_timeout=0.5)

    def publish(status: dict[str, Any]) -> None:
        client.set(STATUS_KEY, json.dumps(status, default=str), ex=STATUS_TTL_S)

    return publish
