"""LoadShedder and query admission, checked against LEVEL_ACTIONS (the spill: test_spill.py)."""

from __future__ import annotations

import numpy as np
import pytest

from k2lib.errors import ConfigError
from k2lib.monitoring.metrics import new_registry
from k2lib.resilience import (
    LEVEL_ACTIONS,
    DegradationLevel,
    LoadShedder,
    QueryPriority,
    SymbolTiers,
)

pytestmark = [pytest.mark.unit, pytest.mark.resilience, pytest.mark.phase2]

L = DegradationLevel
SYMBOLS = np.array(
    ["BTCUSDT", "SOLUSDT", "SYM0001", "ETHUSDT", "DOGEUSDT", "SYM0002", "BTCUSDT", "XYZ"]
)


def test_default_tiers_fit_the_real_and_synthetic_feeds() -> None:
    tiers = SymbolTiers()
    assert tiers.tier_of("BTCUSDT") == tiers.tier_of("ETHUSDT") == 1
    named = ["SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT", "DOTUSDT"]
    assert {tiers.tier_of(s) for s in [*named, "LINKUSDT"]} == {2}
    assert tiers.tier_of("SYM0001") == tiers.tier_of("NEVERSEEN") == 3


def test_tiers_of_is_vectorised_int8_and_matches_the_scalar_lookup() -> None:
    shedder = LoadShedder()
    tiers = shedder.tiers_of(SYMBOLS)
    assert tiers.dtype == np.int8
    assert tiers.tolist() == [SymbolTiers().tier_of(str(s)) for s in SYMBOLS]
    assert shedder.tiers_of(np.array([], dtype=np.str_)).shape == (0,)


def test_venue_specific_entries_win_over_bare_symbols() -> None:
    tiers = SymbolTiers(tier1=frozenset({"binance:BTCUSDT"}), tier2=frozenset({"BTCUSDT"}))
    shedder = LoadShedder(tiers=tiers)
    exchanges = np.array(["binance", "binance-futures", "binance", "binance"])
    symbols = np.array(["BTCUSDT", "BTCUSDT", "ETHUSDT", "BTCUSDT"])
    assert shedder.tiers_of(symbols, exchanges).tolist() == [1, 2, 3, 1]


def test_tiers_of_the_wire_columns_match_the_text_lookup() -> None:
    """The pipeline passes a TradeBatch's fixed-width byte columns, not text."""
    shedder = LoadShedder()
    as_bytes = SYMBOLS.astype("S16")
    venues = np.full(len(SYMBOLS), b"binance", dtype="S16")
    expected = [SymbolTiers().tier_of(str(s)) for s in SYMBOLS]
    assert shedder.tiers_of(as_bytes).tolist() == expected
    assert shedder.tiers_of(as_bytes, venues).tolist() == expected
    venue_tiers = SymbolTiers(tier1=frozenset({"binance:SYM0001"}))
    assert LoadShedder(tiers=venue_tiers).tiers_of(as_bytes, venues)[2] == 1


def test_a_symbol_in_two_tiers_is_rejected() -> None:
    with pytest.raises(ConfigError):
        SymbolTiers(tier1=frozenset({"BTCUSDT"}), tier2=frozenset({"BTCUSDT"}))


@pytest.mark.parametrize("level", list(L))
def test_split_follows_the_level_table(level: DegradationLevel) -> None:
    registry = new_registry()
    shedder = LoadShedder(registry=registry)
    keep, shed = shedder.split(SYMBOLS, level)
    tiers = shedder.tiers_of(SYMBOLS)
    max_tier = LEVEL_ACTIONS[level].max_realtime_tier
    assert (keep == (tiers <= max_tier)).all() and (shed == ~keep).all()
    for t in (1, 2, 3):
        expected = int(((tiers == t) & shed).sum())
        got = registry.get_sample_value("k2_shed_records_total", {"tier": str(t)}) or 0
        assert got == expected


def test_graceful_sheds_tier3_and_aggressive_keeps_only_tier1() -> None:
    shedder = LoadShedder()
    keep, _ = shedder.split(SYMBOLS, L.GRACEFUL)
    assert set(SYMBOLS[keep]) == {"BTCUSDT", "SOLUSDT", "ETHUSDT", "DOGEUSDT"}
    keep, _ = shedder.split(SYMBOLS, L.AGGRESSIVE)
    assert set(SYMBOLS[keep]) == {"BTCUSDT", "ETHUSDT"}
    assert shedder.counts()["shed"] == {"1": 0, "2": 2, "3": 3 + 3}


def test_deferred_and_backfilled_are_counted_per_tier_with_a_pending_gauge() -> None:
    registry = new_registry()
    shedder = LoadShedder(registry=registry, pending_records=5)
    tiers = shedder.tiers_of(SYMBOLS)
    _, shed = shedder.split_tiers(tiers, L.AGGRESSIVE)
    shedder.record_deferred(tiers[shed])
    assert registry.get_sample_value("k2_deferred_pending_records") == 5 + 5
    shedder.record_backfilled(tiers[shed][:3])
    sample = registry.get_sample_value
    assert sample("k2_deferred_records_total", {"tier": "3"}) == 3
    assert sample("k2_deferred_records_total", {"tier": "2"}) == 2
    assert sample("k2_backfilled_records_total", {"tier": "2"}) == 2
    assert sample("k2_deferred_pending_records") == 7
    counts = shedder.counts()
    assert counts["shed"] == counts["deferred"]  # every shed row was stored: nothing lost
    assert counts["pending"] == 7


@pytest.mark.parametrize("level", list(L))
@pytest.mark.parametrize("priority", list(QueryPriority))
def test_query_admission_follows_the_level_table(
    level: DegradationLevel, priority: QueryPriority
) -> None:
    admission = LoadShedder().admit_query(priority, level)
    actions = LEVEL_ACTIONS[level]
    assert admission.admitted == (priority <= actions.max_query_priority)
    if not admission.admitted:
        assert admission.retry_after_s == actions.query_retry_after_s > 0
        assert priority.name in admission.reason


def test_admission_spot_checks_and_sources() -> None:
    shedder = LoadShedder()
    assert shedder.admit_query(QueryPriority.LOW, L.NORMAL).admitted
    assert not shedder.admit_query(QueryPriority.LOW, L.GRACEFUL).admitted
    assert not shedder.admit_query(QueryPriority.NORMAL, L.AGGRESSIVE).admitted
    assert shedder.admit_query(QueryPriority.HIGH, L.CIRCUIT_BREAK, "historical").admitted
    refused = shedder.admit_query(QueryPriority.HIGH, L.CIRCUIT_BREAK, "hybrid")
    assert not refused.admitted and "hybrid" in refused.reason
