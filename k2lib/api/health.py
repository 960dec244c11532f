"""Dependency checks for `/v1/health`: each is live, bounded to about a second, and timed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from k2lib.config import K2Settings
from k2lib.connect import broker_healthy, redis_client
from k2lib.query import HybridQueryEngine

__all__ = ["health_checks"]

CHECK_TIMEOUT_S = 1.0


def health_checks(settings: K2Settings, engine: HybridQueryEngine) -> dict[str, dict[str, Any]]:
    """`{name: {healthy, latency_ms, detail}}` for the broker, Redis and the table."""

    def broker() -> str:
        if not broker_healthy(settings, timeout=CHECK_TIMEOUT_S):
            raise RuntimeError(f"no answer from {settings.kafka_bootstrap}")
        return settings.kafka_bootstrap

    def redis() -> str:
        client = redis_client(
            settings, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
        )
        try:
            client.ping()
        finally:
            client.close()
        return str(settings.redacted()["redis_url"])

    def catalog() -> str:
        pinned = engine.reader.pin()
        return f"{settings.table} at snapshot {pinned.snapshot_id}"

    return {
        name: _timed(check)
        for name, check in (("broker", broker), ("redis", redis), ("catalog", catalog))
    }


def _timed(check: Callable[[], str]) -> dict[str, Any]:
    t = time.perf_counter()
    try:
        detail, healthy = check(), True
    except Exception as exc:  # a health check reports failures; it never raises them
        detail, healthy = f"{type(exc).__name__}: {exc}", False
    return {
        "healthy": healthy,
        "latency_ms": round((time.perf_counter() - t) * 1e3, 3),
        "detail": detail,
    }
