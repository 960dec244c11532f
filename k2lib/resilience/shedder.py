"""Load shedding by symbol tier and query admission by priority, both read from LEVEL_ACTIONS.

Shedding defers, it never loses: a shed record leaves the real-time path and the pipeline
puts it in the DeferredSpill (spill.py), or leaves it uncommitted in Kafka, until the level
falls and it is backfilled. The shedder counts each stage per tier (`shed` when taken off
the path, `deferred` when safely stored, `backfilled` when committed to the table) so that
`shed == deferred` and, once drained, `deferred == backfilled` can be checked.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from k2lib.errors import ConfigError
from k2lib.resilience.levels import DegradationLevel, QueryPriority, actions_for
from k2lib.wire.factorize import factorize, factorize_pair

__all__ = ["Admission", "LoadShedder", "SymbolTiers"]

# The two real feeds' symbols are tier 1; the synthetic feed's other named majors are
# tier 2; generated symbols (SYM0001...) and anything unknown are tier 3.
DEFAULT_TIER1 = frozenset({"BTCUSDT", "ETHUSDT"})
DEFAULT_TIER2 = frozenset(
    {"SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT", "DOTUSDT", "LINKUSDT"}
)
DEFAULT_TIER = 3
TIERS = (1, 2, 3)


@dataclass(frozen=True, kw_only=True)
class SymbolTiers:
    """Symbol -> tier (1 most important). An entry is a bare symbol ("BTCUSDT", any venue) or
    "exchange:SYMBOL" (that venue only; it wins over the bare symbol). Matching is exact."""

    tier1: frozenset[str] = DEFAULT_TIER1
    tier2: frozenset[str] = DEFAULT_TIER2
    tier3: frozenset[str] = frozenset()
    default_tier: int = DEFAULT_TIER

    def __post_init__(self) -> None:
        if self.default_tier not in TIERS:
            raise ConfigError(f"default_tier must be one of {TIERS}")
        overlap = (self.tier1 & self.tier2) | (self.tier1 & self.tier3) | (self.tier2 & self.tier3)
        if overlap:
            raise ConfigError(f"symbols in more than one tier: {sorted(overlap)}")

    @property
    def venue_specific(self) -> bool:
        return any(":" in s for s in self.tier1 | self.tier2 | self.tier3)

    def tier_of(self, symbol: str, exchange: str | None = None) -> int:
        keys = (f"{exchange}:{symbol}", symbol) if exchange is not None else (symbol,)
        for key in keys:
            for tier, members in zip(TIERS, (self.tier1, self.tier2, self.tier3), strict=True):
                if key in members:
                    return tier
        return self.default_tier


@dataclass(frozen=True)
class Admission:
    """The answer to "may this query run now?"; the API turns a refusal into 503 Retry-After."""

    admitted: bool
    retry_after_s: float
    reason: str


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.shed = Counter(
            "k2_shed_records", "Records taken off the real-time path", ["tier"], registry=r
        )
        self.deferred = Counter(
            "k2_deferred_records", "Shed records stored for backfill", ["tier"], registry=r
        )
        self.backfilled = Counter(
            "k2_backfilled_records", "Deferred records committed later", ["tier"], registry=r
        )
        self.pending = Gauge(
            "k2_deferred_pending_records", "Deferred records not yet backfilled", registry=r
        )
        # Every tier's series exists at 0 from the start, so rates and dashboards show a
        # flat zero on a healthy run instead of no data until the first shed record.
        for counter in (self.shed, self.deferred, self.backfilled):
            for tier in TIERS:
                counter.labels(str(tier))


class LoadShedder:
    """Vectorised tier lookup and shedding. Thread-safe counters."""

    def __init__(
        self,
        *,
        tiers: SymbolTiers | None = None,
        registry: CollectorRegistry | None = None,
        pending_records: int = 0,
    ) -> None:
        """`pending_records`: rows already deferred by an earlier process (the spill's
        `pending_rows()`), so the pending gauge is right after a restart."""
        self.tiers = tiers or SymbolTiers()
        self._cache: dict[tuple[str | None, str], int] = {}
        self._lock = threading.Lock()
        self._counts = {
            k: np.zeros(len(TIERS) + 1, np.int64) for k in ("shed", "deferred", "backfilled")
        }
        self._pending = pending_records
        self._metrics = _Metrics(registry) if registry is not None else None
        if self._metrics is not None:
            self._metrics.pending.set(pending_records)

    # -- tiers and shedding ----------------------------------------------------------

    def tiers_of(self, symbols: np.ndarray, exchanges: np.ndarray | None = None) -> np.ndarray:
        """int8 tier per row. Each distinct symbol (or venue, symbol) is looked up once."""
        symbols = np.asarray(symbols)
        if symbols.size == 0:
            return np.zeros(0, np.int8)
        if exchanges is None or not self.tiers.venue_specific:
            codes, uniq = _factorize(symbols)
            table = np.array([self._tier(None, _text(s)) for s in uniq], np.int8)
            return table[codes]
        codes, ex_uniq, sym_uniq = _factorize_pair(np.asarray(exchanges), symbols)
        table = np.array(
            [self._tier(_text(e), _text(s)) for e, s in zip(ex_uniq, sym_uniq, strict=True)],
            np.int8,
        )
        return table[codes]

    def split(
        self,
        symbols: np.ndarray,
        level: DegradationLevel,
        exchanges: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(keep_mask, shed_mask) for one batch at `level`; shed rows are counted per tier."""
        return self.split_tiers(self.tiers_of(symbols, exchanges), level)

    def split_tiers(
        self, tiers: np.ndarray, level: DegradationLevel
    ) -> tuple[np.ndarray, np.ndarray]:
        """As `split`, for a caller that already has the tiers (to pass to record_deferred)."""
        keep = tiers <= actions_for(level).max_realtime_tier
        shed = ~keep
        self._count("shed", tiers[shed])
        return keep, shed

    def record_deferred(self, tiers: np.ndarray) -> None:
        """Shed rows (given by tier) are now durably stored for backfill."""
        self._count("deferred", tiers)

    def record_backfilled(self, tiers: np.ndarray) -> None:
        """Deferred rows (given by tier) are now committed to the table."""
        self._count("backfilled", tiers)

    # -- queries ---------------------------------------------------------------------

    def admit_query(
        self, priority: QueryPriority, level: DegradationLevel, source: str | None = None
    ) -> Admission:
        actions = actions_for(level)
        if not actions.admits_priority(priority):
            reason = f"{priority.name} queries are paused at {DegradationLevel(level).name}"
            return Admission(False, actions.query_retry_after_s, reason)
        if source is not None and source not in actions.query_sources:
            reason = f"source {source!r} is unavailable at {DegradationLevel(level).name}"
            return Admission(False, actions.query_retry_after_s, reason)
        return Admission(True, 0.0, "admitted")

    # -- accounting ------------------------------------------------------------------

    @property
    def pending_records(self) -> int:
        return self._pending

    def counts(self) -> dict[str, Any]:
        """Per-tier totals for the ingest summary: {"shed": {"1": n, ...}, ..., "pending": n}."""
        with self._lock:
            out: dict[str, Any] = {
                kind: {str(t): int(c[t]) for t in TIERS} for kind, c in self._counts.items()
            }
            out["pending"] = self._pending
            return out

    def _tier(self, exchange: str | None, symbol: str) -> int:
        key = (exchange, symbol)
        tier = self._cache.get(key)
        if tier is None:
            tier = self._cache[key] = self.tiers.tier_of(symbol, exchange)
        return tier

    def _count(self, kind: str, tiers: np.ndarray) -> None:
        if tiers.size == 0:
            return
        per_tier = np.bincount(tiers.astype(np.int64), minlength=len(TIERS) + 1)
        with self._lock:
            self._counts[kind] += per_tier[: len(TIERS) + 1]
            if kind == "deferred":
                self._pending += int(tiers.size)
            elif kind == "backfilled":
                # Clamped: rows deferred by an earlier process are only known if passed in.
                self._pending = max(self._pending - int(tiers.size), 0)
            if self._metrics is None:
                return
            counter = getattr(self._metrics, kind)
            for t in TIERS:
                if per_tier[t]:
                    counter.labels(str(t)).inc(int(per_tier[t]))
            self._metrics.pending.set(self._pending)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (code per row, distinct values). Fixed-width bytes (the wire's names) take the
    hash-based path; anything else the sorting one."""
    if values.dtype.kind == "S":
        return factorize(values)
    uniq, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1), uniq


def _factorize_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if a.dtype.kind == "S" and b.dtype.kind == "S":
        return factorize_pair(a, b)
    a_codes, a_uniq = _factorize(a)
    b_codes, b_uniq = _factorize(b)
    pair = a_codes.astype(np.int64) * len(b_uniq) + b_codes
    uniq, codes = np.unique(pair, return_inverse=True)
    return codes.reshape(-1), a_uniq[uniq // len(b_uniq)], b_uniq[uniq % len(b_uniq)]
