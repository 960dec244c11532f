"""Seeded fault injection between a source and Kafka, and the ground truth it wrote.

Spec: `dup=0.01,gap=0.001,reorder=0.01,poison=0.001` (probabilities per record).

- `gap`: the record is dropped (never published). Consecutive drops of one key form one
  gap. A drop after the last delivered record of its key is undetectable and is not
  counted as a gap in the truth.
- `dup`: the record is published twice (the copy a few messages later).
- `reorder`: the record swaps places with the next record of the same key in the chunk.
- `poison`: a malformed message is inserted (garbage, truncated, or a record that breaks
  a rule), keyed like its neighbour.
- `reset`: the venue restarts the record's key at seq 1 here, as a new session: this and
  every later record of the key are renumbered from 1 and timed `RESET_QUIET_US` later (per
  reset). A key resets only after `RESET_AFTER` records of its session, so the new numbers
  fall more than the tracker's default `reset_jump` below the old (its rule, with the quiet
  period, sees the reset). The reset record itself is never dropped, and no reorder swaps
  records of two sessions. The truth lists the gaps of each key's last session: the tracker
  abandons an earlier session's gaps.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from k2lib.errors import ConfigError
from k2lib.wire.codec import RECORD_SIZE, encode_batch
from k2lib.wire.schema import TradeBatch

__all__ = ["FaultInjector", "FaultSpec", "FaultTruth"]

KINDS = ("dup", "gap", "reorder", "poison", "reset")
RESET_AFTER = 1_100  # records of a session before its key may reset (reset_jump is 1,000)
RESET_QUIET_US = 120_000_000  # exchange-clock pause before a new session (the rule: 60 s)


@dataclass(frozen=True, kw_only=True)
class FaultSpec:
    dup: float = 0.0
    gap: float = 0.0
    reorder: float = 0.0
    poison: float = 0.0
    reset: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        if not text:
            return cls()
        values: dict[str, float] = {}
        for part in text.split(","):
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in KINDS:
                raise ConfigError(f"bad fault {part!r}: use kind=probability with kind in {KINDS}")
            try:
                p = float(raw)
            except ValueError as exc:
                raise ConfigError(f"bad probability in {part!r}") from exc
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"probability in {part!r} must be in [0, 1)")
            values[name] = p
        return cls(**values)

    @property
    def active(self) -> bool:
        return any((self.dup, self.gap, self.reorder, self.poison, self.reset))


@dataclass
class FaultTruth:
    """What was injected, per `exchange:symbol` key, for checking K2's findings exactly."""

    spec: FaultSpec
    seed: int
    dropped: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    max_delivered: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    reordered: int = 0
    poison: int = 0
    resets: int = 0
    records: int = 0  # unique valid records published
    messages: int = 0  # everything published

    def gaps(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for key, seqs in sorted(self.dropped.items()):
            exchange, symbol = key.split(":", 1)
            top = self.max_delivered.get(key, -1)
            visible = sorted(s for s in seqs if s < top)
            for first, last in _ranges(visible):
                out.append({"exchange": exchange, "symbol": symbol, "first": first, "last": last})
        out.sort(key=lambda g: (g["exchange"], g["symbol"], g["first"]))  # as `k2 gaps` lists
        return out

    def as_dict(self) -> dict[str, Any]:
        gaps = self.gaps()
        return {
            "seed": self.seed,
            "spec": self.spec.__dict__,
            "messages": self.messages,
            "unique_records": self.records,
            "duplicates_total": sum(self.duplicates.values()),
            "duplicates": dict(sorted(self.duplicates.items())),
            "gaps": gaps,
            "gap_count": len(gaps),
            "gap_records": sum(g["last"] - g["first"] + 1 for g in gaps),
            "reordered": self.reordered,
            "poison": self.poison,
            "resets": self.resets,
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=1))


def _ranges(values: list[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for v in values:
        if ranges and v == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], v)
        else:
            ranges.append((v, v))
    return ranges


@dataclass
class _Session:
    """One key's current session: how to renumber and retime its records."""

    number: int = 0
    count: int = 0
    base: int = 0
    shift_us: int = 0

    def restart(self, seq: int) -> None:
        self.number += 1
        self.count = 0
        self.base = seq - 1
        self.shift_us += RESET_QUIET_US


class FaultInjector:
    """Turns a TradeBatch into the (key, value) messages to publish, faults included."""

    def __init__(self, spec: FaultSpec, seed: int = 0) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(seed)
        self.truth = FaultTruth(spec=spec, seed=seed)
        self._sessions: dict[str, _Session] = {}

    def apply(self, batch: TradeBatch) -> tuple[list[bytes], list[bytes]]:
        """-> (keys, values) in publish order."""
        n = len(batch)
        rng, spec = self.rng, self.spec
        codes, pairs = batch.key_codes()
        names = [f"{e}:{s}" for e, s in pairs]
        keep = rng.random(n) >= spec.gap if spec.gap else np.ones(n, bool)
        session = np.zeros(n, np.int64)
        if spec.reset:
            batch, session, starts = self._reset(batch, codes, names)
            keep[starts] = True
        last = np.zeros(len(names), np.int64)
        np.maximum.at(last, codes, session)
        current = session == last[codes]  # records of each key's last session so far
        for i in np.flatnonzero(~keep & current):
            self.truth.dropped[names[codes[i]]].append(int(batch.seq[i]))
        order = np.flatnonzero(keep)
        if spec.reorder and order.size:
            order = self._reorder(order, codes * (int(session.max()) + 1) + session)
        kept = batch.take(order)
        kept_codes = codes[order]
        kept_current = current[order]
        for c in np.unique(kept_codes[kept_current]):
            top = int(kept.seq[(kept_codes == c) & kept_current].max())
            key = names[c]
            self.truth.max_delivered[key] = max(self.truth.max_delivered.get(key, -1), top)
        values = encode_batch(kept)
        key_bytes = [n.encode() for n in names]
        keys = [key_bytes[c] for c in kept_codes.tolist()]
        self.truth.records += len(values)
        if spec.dup:
            self._duplicate(keys, values, kept_codes, names)
        if spec.poison:
            self._poison(keys, values)
        self.truth.messages += len(values)
        return keys, values

    def _reset(
        self, batch: TradeBatch, codes: np.ndarray, names: list[str]
    ) -> tuple[TradeBatch, np.ndarray, np.ndarray]:
        """Renumber keys that restart -> (the batch, each record's session number, the
        indices of the records that begin a session)."""
        seq, ts = batch.seq.copy(), batch.exch_ts.copy()
        session = np.zeros(len(batch), np.int64)
        starts: list[int] = []
        draws = self.rng.random(len(batch))
        for i, c in enumerate(codes.tolist()):
            state = self._sessions.setdefault(names[c], _Session())
            if state.count >= RESET_AFTER and draws[i] < self.spec.reset:
                state.restart(int(seq[i]))
                self.truth.resets += 1
                # What the tracker can still report is the new session's.
                self.truth.dropped.pop(names[c], None)
                self.truth.max_delivered.pop(names[c], None)
                starts.append(i)
            state.count += 1
            seq[i] -= state.base
            ts[i] += state.shift_us
            session[i] = state.number
        renumbered = replace(batch, seq=seq, exch_ts=ts)
        return renumbered, session, np.asarray(starts, np.int64)

    def _reorder(self, order: np.ndarray, codes: np.ndarray) -> np.ndarray:
        order = order.copy()
        picks = np.flatnonzero(self.rng.random(order.size) < self.spec.reorder)
        for i in picks.tolist():
            code = codes[order[i]]
            later = np.flatnonzero(codes[order[i + 1 : i + 50]] == code)
            if later.size:
                j = i + 1 + int(later[0])
                order[i], order[j] = order[j], order[i]
                self.truth.reordered += 1
        return order

    def _duplicate(
        self, keys: list[bytes], values: list[bytes], codes: np.ndarray, names: list[str]
    ) -> None:
        picks = np.flatnonzero(self.rng.random(len(values)) < self.spec.dup)
        # Insert from the back so earlier positions stay valid.
        for i in picks[::-1].tolist():
            at = min(len(values), i + 1 + int(self.rng.integers(0, 20)))
            keys.insert(at, keys[i])
            values.insert(at, values[i])
            self.truth.duplicates[names[codes[i]]] += 1

    def _poison(self, keys: list[bytes], values: list[bytes]) -> None:
        picks = np.flatnonzero(self.rng.random(len(values)) < self.spec.poison)
        for i in picks[::-1].tolist():
            kind = int(self.rng.integers(0, 3))
            if kind == 0:
                bad = b"{not a trade}" + bytes(self.rng.integers(0, 256, 8, dtype=np.uint8))
            elif kind == 1:
                bad = values[i][: RECORD_SIZE // 2]
            else:  # right size, broken rule: price zero
                raw = bytearray(values[i])
                raw[60:68] = (0).to_bytes(8, "little")
                bad = bytes(raw)
            keys.insert(i, keys[i])
            values.insert(i, bad)
            self.truth.poison += 1
