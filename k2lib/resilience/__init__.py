"""Resilience: circuit breakers, the degradation cascade, load shedding and the deferred spill.

- `breaker`  one CircuitBreaker per dependency (redis, iceberg_commit, broker)
- `levels`   DegradationLevel and LEVEL_ACTIONS, the one table of what each level does
- `signals`  Signals (lag, batch latency, RSS, breaker states) and their thresholds
- `manager`  DegradationManager: signals -> level, with hysteresis, dwell and step-down
- `shedder`  LoadShedder: symbol tiers off the real-time path, query admission by priority
- `spill`    DeferredSpill: deferred records on disk until they are backfilled, per topic
             and table (`spill_directory`); `read_spill`, the read-only reader for queries
"""

from k2lib.resilience.breaker import BreakerConfig, BreakerListener, BreakerState, CircuitBreaker
from k2lib.resilience.levels import (
    LEVEL_ACTIONS,
    DegradationLevel,
    LevelActions,
    QueryPriority,
    actions_for,
)
from k2lib.resilience.manager import (
    DegradationConfig,
    DegradationListener,
    DegradationManager,
    Transition,
)
from k2lib.resilience.shedder import Admission, LoadShedder, SymbolTiers
from k2lib.resilience.signals import (
    ProcessMemory,
    Signals,
    Thresholds,
    breaker_states,
    lag_from_stats,
)
from k2lib.resilience.spill import DeferredSpill, SpillToken, read_spill, spill_directory

__all__ = [
    "LEVEL_ACTIONS",
    "Admission",
    "BreakerConfig",
    "BreakerListener",
    "BreakerState",
    "CircuitBreaker",
    "DeferredSpill",
    "DegradationConfig",
    "DegradationLevel",
    "DegradationListener",
    "DegradationManager",
    "LevelActions",
    "LoadShedder",
    "ProcessMemory",
    "QueryPriority",
    "Signals",
    "SpillToken",
    "SymbolTiers",
    "Thresholds",
    "Transition",
    "actions_for",
    "breaker_states",
    "lag_from_stats",
    "read_spill",
    "spill_directory",
]
