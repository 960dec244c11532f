"""Redis keys a test may write: a fresh `test:{kind}:` prefix, its keys deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from k2lib.ingestion.scripts import drop_prefix


def fresh_prefix(kind: str) -> str:
    return f"test:{kind}:{uuid.uuid4().hex}:"


@contextmanager
def scratch_prefix(client: Any, kind: str) -> Iterator[str]:
    """A fresh prefix; every key under it is deleted (through `client`) on the way out."""
    prefix = fresh_prefix(kind)
    try:
        yield prefix
    finally:
        drop_prefix(client, prefix)


def scratch_fixtures(kind: str) -> tuple[Any, Any]:
    """The `client` and `prefix` fixtures of a test module: a new client on the single Redis
    or on the test cluster (every test that takes it runs on both), and a fresh prefix."""

    @pytest.fixture
    def client(redis_connect: Callable[[], Any]) -> Any:
        return redis_connect()

    @pytest.fixture
    def prefix(client: Any) -> Iterator[str]:
        with scratch_prefix(client, kind) as p:
            yield p

    return client, prefix
