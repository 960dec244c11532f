"""Query admission: which level applies, and what the API does at it (no services)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from k2lib.api.admission import STATUS_KEY, LevelSource, decide
from k2lib.clock import ManualClock
from k2lib.resilience.levels import DegradationLevel as L
from k2lib.resilience.levels import QueryPriority as P
from k2lib.resilience.manager import DegradationManager
from k2lib.resilience.shedder import LoadShedder

pytestmark = [pytest.mark.unit, pytest.mark.hybrid, pytest.mark.phase2]


class FakeRedis:
    def __init__(self, value: Any = None, fail: bool = False) -> None:
        self.value, self.fail, self.gets = value, fail, 0

    def get(self, key: str) -> Any:
        assert key == STATUS_KEY
        self.gets += 1
        if self.fail:
            raise ConnectionError("redis down")
        return self.value


def source(redis: FakeRedis, clock: ManualClock, wall: float = 1000.0) -> LevelSource:
    return LevelSource(redis_factory=lambda: redis, clock=clock, wall=lambda: wall)


def test_manager_wins_over_redis() -> None:
    manager = DegradationManager()
    manager.force(L.AGGRESSIVE)
    reading = LevelSource(manager=manager, redis_factory=lambda: FakeRedis(b"{}")).current()
    assert reading.level is L.AGGRESSIVE and reading.source == "manager"


def test_fresh_redis_status_applies_and_is_cached() -> None:
    clock = ManualClock()
    redis = FakeRedis(json.dumps({"level": "GRACEFUL", "level_value": 2, "published_at": 995}))
    levels = source(redis, clock)
    assert levels.current().level is L.GRACEFUL and levels.current().source == "redis"
    assert redis.gets == 1
    clock.advance(1.5)
    levels.current()
    assert redis.gets == 2


@pytest.mark.parametrize(
    ("redis", "note"),
    [
        (FakeRedis(None), None),
        (FakeRedis(json.dumps({"level": "CIRCUIT_BREAK", "published_at": 900})), "stale_level"),
        (FakeRedis(b"not json"), "unreadable"),
        (FakeRedis(json.dumps({"level": "PANIC"})), "unreadable"),
        (FakeRedis(fail=True), "redis_error"),
    ],
)
def test_anything_else_is_normal_by_default(redis: FakeRedis, note: str | None) -> None:
    reading = source(redis, ManualClock()).current()
    assert reading.level is L.NORMAL and reading.source == "default"
    if note:
        assert note in reading.detail
    assert reading.as_dict()["actions"]["query_sources"] == ["historical", "hybrid", "realtime"]


def test_decisions_follow_level_actions() -> None:
    shedder = LoadShedder()
    assert decide(shedder, P.LOW, L.NORMAL, "hybrid").admitted
    low = decide(shedder, P.LOW, L.GRACEFUL, "hybrid")
    assert not low.admitted and low.retry_after_s == 5
    assert decide(shedder, P.NORMAL, L.GRACEFUL, "realtime").admitted
    assert not decide(shedder, P.NORMAL, L.AGGRESSIVE, "hybrid").admitted
    down = decide(shedder, P.HIGH, L.CIRCUIT_BREAK, "hybrid")
    assert down.admitted and down.source == "historical" and "Iceberg only" in (down.warning or "")
    real = decide(shedder, P.HIGH, L.CIRCUIT_BREAK, "realtime")
    assert not real.admitted and real.retry_after_s == 30
    assert decide(shedder, P.HIGH, L.CIRCUIT_BREAK, "historical").source == "historical"
