"""Sequence tracking: every record of a feed labelled, per `(exchange, symbol)`.

The interface lives here; implementations sit beside it:

- `redis.RedisSequenceTracker`: one Lua call per batch, atomic and safe across consumers;
- `gaps.list_gaps`: the open gaps kept in Redis (what `k2 gaps` prints);
- `_reference.classify_key`: the same rules in plain Python, the spec `classify.lua` follows
  (and the engine of the in-process twin `k2lib.testing.MemorySequenceTracker`).

State per key: `first` (lowest seq of the session), `last` (highest), `last_ts` (exch_ts of the
record that set `last`), the session and the open gaps, disjoint ranges inside
`[first, last]`. Every seq in `[first, last]` is either seen or in an open gap; that
invariant is what makes DUPLICATE exact.

Labels, in arrival order (records of one key see the earlier records of the same batch):

- IN_ORDER: `seq == last + 1`, or the first record of a key;
- GAP: `seq > last + 1`, the first record after the hole `[last + 1, seq - 1]`. A hole filled
  entirely within the same batch is a local swap, not a gap: its record is relabelled
  IN_ORDER and nothing is reported;
- DUPLICATE: a seq in `[first, last]` that is not in an open gap;
- LATE_FILL: a seq inside a gap recorded by an earlier batch (it closes that seq);
- OUT_OF_ORDER: a seq inside a hole opened earlier in this batch, or below `first` (the range
  extends downward; a hole left below `first` is a new gap);
- RESET: a new session. The key's state restarts at this record and the old session's open
  gaps are abandoned: counted in `abandoned_gap_messages`, no longer listed (their seqs are
  reused by the new session, so they can never be filled). See `SequenceConfig` for the rule.

Every record also gets its session (`BatchClassification.sessions`): 0 for a key's first,
then the exch_ts of the RESET that began it. A trade is `(exchange, symbol, session, seq)`:
the deduplicator and the table key on it, so a venue that numbers a new session from 1 again
stores it (ADR 016). A record timed before the quiet period that preceded the current
session's RESET belongs to the previous session (a late copy): labelled DUPLICATE there, it
leaves the state alone, and the deduplicator decides it in its own session.
`replay_committed` takes rows in the sessions they were stored in.

A record Kafka delivers again is labelled DUPLICATE and leaves the gaps alone. The pipeline
resumes from the offsets the table records, and `replay_committed` brings the state up to
rows already committed without counting them (`k2lib.ingestion.state`).

At the end of any stream, however it was cut into batches: the open gaps are exactly the
missing seqs of each key's current session; the abandoned count is exactly the missing seqs of
its earlier sessions; DUPLICATE counts exactly the records delivered again; and the sum of new
gaps' sizes minus late fills equals open plus abandoned.

Seqs and timestamps must stay within ±2**53 (Lua numbers are doubles).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from prometheus_client import CollectorRegistry

from k2lib.errors import ConfigError
from k2lib.ingestion.sequence._metrics import SequenceMetrics
from k2lib.ingestion.sequence._runs import KeyCodes, RunOutcome, RunPlan, plan_runs
from k2lib.wire.schema import TradeBatch

__all__ = [
    "BatchClassification",
    "Gap",
    "SeqLabel",
    "SequenceConfig",
    "SequenceTracker",
]

DEFAULT_RESET_JUMP = 1_000
DEFAULT_RESET_QUIET_US = 60_000_000


class SeqLabel(IntEnum):
    IN_ORDER = 0
    DUPLICATE = 1
    GAP = 2
    LATE_FILL = 3
    OUT_OF_ORDER = 4
    RESET = 5


@dataclass(frozen=True, kw_only=True)
class SequenceConfig:
    """When a backwards seq is a new session rather than a duplicate or a late record.

    A record is a RESET when either rule holds:

    - its seq is more than `reset_jump` below `last` AND its exch_ts is more than
      `reset_quiet_us` after `last_ts` (a late or duplicated record carries its old timestamp,
      so it never looks quiet);
    - `session_length_us > 0`, its seq is at or below `last`, and its exch_ts falls in a later
      session than `last_ts` (sessions start at `session_offset_us + k * session_length_us`).
    """

    reset_jump: int = DEFAULT_RESET_JUMP
    reset_quiet_us: int = DEFAULT_RESET_QUIET_US
    session_length_us: int = 0
    session_offset_us: int = 0

    @property
    def late_margin_us(self) -> int:
        """Half the quiet period before a session: a record timed more than this before the
        session began is a late record of an earlier one (`classify.lua` has the same)."""
        return max(1, self.reset_quiet_us // 2)

    def __post_init__(self) -> None:
        if self.reset_jump < 0 or self.reset_quiet_us < 0 or self.session_length_us < 0:
            raise ConfigError("reset_jump, reset_quiet_us and session_length_us must be >= 0")


@dataclass(frozen=True, slots=True, order=True)
class Gap:
    """Missing seqs `first..last` (inclusive) of one key."""

    exchange: str
    symbol: str
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, kw_only=True)
class BatchClassification:
    """One label per record (`SeqLabel` values, int8, in the batch's row order) and what changed.

    `sessions` (int64, row order) is the session each record belongs to: 0 for a key's first,
    then the exch_ts of the RESET that began it. `new_gaps` are the holes this batch found and
    did not fill itself; `abandoned_gap_messages` counts open seqs dropped because their
    session reset.
    """

    labels: np.ndarray
    sessions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    new_gaps: list[Gap] = field(default_factory=list)
    abandoned_gap_messages: int = 0

    def count(self, label: SeqLabel) -> int:
        return int(np.count_nonzero(self.labels == label))

    @property
    def duplicates(self) -> int:
        return self.count(SeqLabel.DUPLICATE)

    @property
    def late_fills(self) -> int:
        return self.count(SeqLabel.LATE_FILL)

    @property
    def out_of_order(self) -> int:
        return self.count(SeqLabel.OUT_OF_ORDER)

    @property
    def resets(self) -> int:
        return self.count(SeqLabel.RESET)

    @property
    def gaps(self) -> int:
        return len(self.new_gaps)

    @property
    def gap_messages(self) -> int:
        return sum(g.size for g in self.new_gaps)

    def summary(self) -> dict[str, int]:
        counts = np.bincount(self.labels.astype(np.int64), minlength=len(SeqLabel))
        out = {label.name.lower(): int(counts[label]) for label in SeqLabel}
        out["gaps"] = self.gaps
        out["gap_messages"] = self.gap_messages
        out["abandoned_gap_messages"] = self.abandoned_gap_messages
        return out


class SequenceTracker(ABC):
    """Classifies batches. Subclasses implement `_apply` (one atomic step over a RunPlan)."""

    def __init__(
        self, *, config: SequenceConfig | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        self.config = config or SequenceConfig()
        self._metrics = SequenceMetrics(registry if registry is not None else CollectorRegistry())
        self._totals: dict[str, int] = {}

    def classify_batch(
        self, batch: TradeBatch, *, key_codes: KeyCodes | None = None
    ) -> BatchClassification:
        """Label every record of `batch`. On a ServiceError no state has changed: retry it.

        Pass `key_codes=batch.key_codes()` when the pipeline already computed it (the
        deduplicator needs it too); it is the costliest step of planning.
        """
        plan = plan_runs(
            batch, np.ones(len(batch), bool), key_codes, split_us=self.config.late_margin_us
        )
        outcome = self._apply(plan) if plan.n else RunOutcome.empty()
        labels = np.zeros(len(batch), np.int8)
        sessions = np.zeros(len(batch), np.int64)
        if plan.n:
            sorted_labels = outcome.labels_sorted(plan.n)
            labels[plan.index] = sorted_labels
            sessions[plan.index] = outcome.sessions_sorted(plan)
        result = BatchClassification(
            labels=labels,
            sessions=sessions,
            new_gaps=[Gap(*plan.keys[k], first=lo, last=hi) for k, lo, hi in outcome.new_gaps],
            abandoned_gap_messages=outcome.abandoned,
        )
        self._metrics.observe(result)
        for name, count in result.summary().items():
            self._totals[name] = self._totals.get(name, 0) + count
        return result

    def replay_committed(self, batch: TradeBatch) -> None:
        """Bring the state up to rows the table already holds (a rebuild after Redis lost
        it, or rows committed behind this process's back). Rows seen before change nothing;
        labels are not counted, since these records were counted when first classified.
        Each row's `session` is the one it was stored in: a later one restarts the key's
        state there, an earlier one changes nothing."""
        if len(batch):
            plan = plan_runs(batch, np.ones(len(batch), bool), replay=True)
            if plan.n:
                self._apply(plan)

    @abstractmethod
    def _apply(self, plan: RunPlan) -> RunOutcome:
        """Apply a plan atomically."""

    @abstractmethod
    def open_gaps(self) -> list[Gap]:
        """Every open gap, sorted by exchange, symbol, first."""

    def summary(self) -> dict[str, int]:
        """Totals since this tracker started (for `k2 ingest`'s summary)."""
        return dict(self._totals)
