"""The live local stack for integration tests: started once per session, never mocked.

Each test gets its own uuid-named topic and table, so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from k2lib.config import K2Settings
from k2lib.connect import create_topics
from k2lib.stack import LocalStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def stack_settings() -> K2Settings:
    settings = K2Settings.from_env()
    LocalStack(settings).up()  # idempotent; a failure here fails the session loudly
    return settings


@pytest.fixture
def k2_settings(stack_settings: K2Settings) -> Iterator[K2Settings]:
    tag = uuid.uuid4().hex[:10]
    settings = stack_settings.with_(
        topic=f"test.trades.{tag}",
        dlq_topic=f"test.trades.{tag}.dlq",
        table=f"test.trades_{tag}",
    )
    create_topics(settings, {settings.topic: settings.partitions, settings.dlq_topic: 1})
    yield settings


@pytest.fixture
def k2_env(k2_settings: K2Settings) -> dict[str, str]:
    """Environment that points a `k2` subprocess at this test's topic and table."""
    return {
        "K2_HOME": str(k2_settings.home),
        "K2_TOPIC": k2_settings.topic,
        "K2_DLQ_TOPIC": k2_settings.dlq_topic,
        "K2_TABLE": k2_settings.table,
        "K2_METRICS_PORT": "0",
    }


@pytest.fixture(scope="session")
def redis_url(stack_settings: K2Settings) -> str:
    return stack_settings.redis_url


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A raw redis-py client on the stack's Redis (tests give their keys a uuid prefix)."""
    r = redis.Redis.from_url(redis_url)
    yield r
    r.close()
