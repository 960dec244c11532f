"""Labelled series exist at 0 from the moment their metric is created, so a dashboard or
an alert rule over a healthy run sees zeros rather than no data."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from k2lib.resilience.breaker import CircuitBreaker
from k2lib.resilience.levels import DegradationLevel
from k2lib.resilience.manager import DegradationManager
from k2lib.resilience.shedder import TIERS, LoadShedder

pytestmark = [pytest.mark.unit]


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == name
    }


def test_shed_deferred_and_backfilled_exist_for_every_tier() -> None:
    registry = CollectorRegistry()
    LoadShedder(registry=registry)
    for name in (
        "k2_shed_records_total",
        "k2_deferred_records_total",
        "k2_backfilled_records_total",
    ):
        assert samples(registry, name) == {(("tier", str(t)),): 0.0 for t in TIERS}, name


def test_each_breakers_counters_exist_before_its_first_failure() -> None:
    registry = CollectorRegistry()
    for name in ("redis", "iceberg_commit", "broker"):
        CircuitBreaker(name, registry=registry)
    expected = {(("breaker", n),): 0.0 for n in ("redis", "iceberg_commit", "broker")}
    assert samples(registry, "k2_circuit_breaker_failures_total") == expected
    assert samples(registry, "k2_circuit_breaker_rejected_calls_total") == expected


def test_every_level_change_exists_before_it_happens() -> None:
    registry = CollectorRegistry()
    DegradationManager(registry=registry)
    pairs = samples(registry, "k2_degradation_transitions_total")
    levels = [level.name for level in DegradationLevel]
    assert pairs == {(("from", a), ("to", b)): 0.0 for a in levels for b in levels if a != b}
