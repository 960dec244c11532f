"""A batch compressed into runs, and the labels that come back.

Records are grouped by key (stable, so arrival order holds within a key) and cut into runs of
consecutive ascending seqs. An in-order batch of 10k records over 500 symbols is ~500 runs, so
the stateful step (Lua or Python) works per run, and NumPy expands its answer per record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from k2lib.errors import ServiceError, ValidationError
from k2lib.wire.schema import TradeBatch

__all__ = [
    "MAX_ABS_VALUE",
    "KeyCodes",
    "Replay",
    "RunOutcome",
    "RunPlan",
    "partition_ranges",
    "plan_runs",
    "replayed_mask",
]

MAX_ABS_VALUE = 2**53  # Lua numbers are doubles: integers are exact below this


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """`index[i]` is the batch row of the i-th record in run order."""

    n: int
    index: np.ndarray
    keys: list[tuple[str, str]]
    runs: np.ndarray
    """(R, 4) int64: first seq, last seq, exch_ts of the first record, exch_ts of the last."""
    runs_per_key: np.ndarray
    """(K,) int32, in `keys` order; the runs of key k follow those of key k - 1."""
    partitions: np.ndarray
    """(P, 3) int64: Kafka partition, lowest offset, highest offset (Kafka provenance only)."""


@dataclass(frozen=True, kw_only=True)
class RunOutcome:
    """Labels as segments `(length, label)` covering the records in run order."""

    seg_len: np.ndarray
    seg_label: np.ndarray
    new_gaps: list[tuple[int, int, int]] = field(default_factory=list)
    """(key index, first, last) of each hole left open by this batch."""
    abandoned: int = 0

    @classmethod
    def empty(cls) -> RunOutcome:
        return cls(seg_len=np.zeros(0, np.int64), seg_label=np.zeros(0, np.int8))

    def labels_sorted(self, n: int) -> np.ndarray:
        labels = np.repeat(self.seg_label.astype(np.int8), self.seg_len)
        if labels.shape[0] != n:
            raise ServiceError(f"tracker labelled {labels.shape[0]} records, expected {n}")
        return labels


@dataclass(frozen=True)
class Replay:
    """Some records are at or below their partition's high-water mark; nothing was applied."""

    high_water: dict[int, int]


KeyCodes = tuple[np.ndarray, list[tuple[str, str]]]


def plan_runs(
    batch: TradeBatch, selected: np.ndarray, key_codes: KeyCodes | None = None
) -> RunPlan:
    """`key_codes` is `batch.key_codes()` if the caller already has it (it is the costly part)."""
    index = np.flatnonzero(selected)
    n = int(index.size)
    if n == 0:
        return RunPlan(
            n=0,
            index=index,
            keys=[],
            runs=np.zeros((0, 4), np.int64),
            runs_per_key=np.zeros(0, np.int32),
            partitions=np.zeros((0, 3), np.int64),
        )
    sub = batch if n == len(batch) else batch.take(index)
    seq, ts = sub.seq.astype(np.int64), sub.exch_ts.astype(np.int64)
    for name, col in (("seq", seq), ("exch_ts", ts)):
        if np.any(np.abs(col) >= MAX_ABS_VALUE):
            raise ValidationError(f"{name} outside ±2**53 cannot be tracked exactly")
    codes, keys = _codes_of(sub, index, key_codes, whole=n == len(batch))
    # Small codes sort by radix: several times faster than a stable int32 merge sort.
    narrow = codes.astype(np.int16) if len(keys) <= np.iinfo(np.int16).max else codes
    order = np.argsort(narrow, kind="stable")
    c, s, t = codes[order], seq[order], ts[order]
    cut = np.ones(n, bool)
    cut[1:] = (c[1:] != c[:-1]) | (s[1:] != s[:-1] + 1)
    starts = np.flatnonzero(cut)
    ends = np.append(starts[1:], n) - 1
    runs = np.stack([s[starts], s[ends], t[starts], t[ends]], axis=1)
    runs_per_key = np.bincount(c[starts], minlength=len(keys)).astype(np.int32)
    return RunPlan(
        n=n,
        index=index[order],
        keys=keys,
        runs=np.ascontiguousarray(runs, dtype=np.int64),
        runs_per_key=runs_per_key,
        partitions=partition_ranges(sub.partition, sub.offset),
    )


def _codes_of(
    sub: TradeBatch, index: np.ndarray, key_codes: KeyCodes | None, *, whole: bool
) -> KeyCodes:
    if key_codes is None:
        return sub.key_codes()
    codes, keys = key_codes
    if len(codes) != len(index) and whole:
        raise ValidationError("key_codes do not belong to this batch")
    if whole:
        return codes, keys
    # A subset may miss some keys: renumber so that every key listed has records.
    codes = codes[index]
    present = np.bincount(codes, minlength=len(keys)) > 0
    renumber = np.cumsum(present) - 1
    return renumber[codes].astype(np.int32), [keys[i] for i in np.flatnonzero(present).tolist()]


def partition_ranges(partition: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(P, 3) int64 rows of partition, lowest and highest offset; rows without provenance skip."""
    ok = (partition >= 0) & (offset >= 0)
    if not ok.any():
        return np.zeros((0, 3), np.int64)
    p, o = partition[ok].astype(np.int64), offset[ok].astype(np.int64)
    parts, inverse = np.unique(p, return_inverse=True)
    lo = np.full(parts.size, np.iinfo(np.int64).max, np.int64)
    hi = np.full(parts.size, -1, np.int64)
    np.minimum.at(lo, inverse, o)
    np.maximum.at(hi, inverse, o)
    return np.stack([parts, lo, hi], axis=1)


def replayed_mask(batch: TradeBatch, high_water: dict[int, int]) -> np.ndarray:
    """Rows whose Kafka offset is at or below their partition's high-water mark."""
    mask = np.zeros(len(batch), bool)
    for partition, hw in high_water.items():
        mask |= (batch.partition == partition) & (batch.offset >= 0) & (batch.offset <= hw)
    return mask
