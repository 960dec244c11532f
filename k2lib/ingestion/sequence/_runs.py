"""A batch compressed into runs, and the labels that come back.

Records are grouped by key (stable, so arrival order holds within a key) and cut into runs of
consecutive ascending seqs of one session. An in-order batch of 10k records over 500 symbols
is ~500 runs, so the stateful step (Lua or Python) works per run, and NumPy expands its
answer per record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from k2lib.errors import ServiceError, ValidationError
from k2lib.wire.factorize import mix64
from k2lib.wire.schema import TradeBatch

__all__ = [
    "ASSIGN",
    "MAX_ABS_VALUE",
    "KeyCodes",
    "RunOutcome",
    "RunPlan",
    "grouped",
    "name_hashes",
    "plan_runs",
]

MAX_ABS_VALUE = 2**53  # Lua numbers are doubles: integers are exact below this
ASSIGN = -1  # a run's session when the tracker assigns it
NAME_WIDTH = 16


def _words(names: np.ndarray) -> np.ndarray:
    fixed = np.ascontiguousarray(np.asarray(names).astype(f"S{NAME_WIDTH}"))
    return fixed.view(np.uint64).reshape(fixed.shape[0], NAME_WIDTH // 8)


def grouped(names: np.ndarray) -> np.ndarray:
    """Row order that groups equal `names` (uint64), arrival order kept within a group.

    Arrow's hash kernel gives dense codes in one pass and a stable sort of small codes is a
    radix sort: together under half the cost of a stable sort of the 64-bit hashes.
    """
    codes = pa.array(names).dictionary_encode().indices.to_numpy(zero_copy_only=False)
    narrow = codes.astype(np.int16) if codes.size and codes.max() < 2**15 else codes
    return np.argsort(narrow, kind="stable")


def name_hashes(exchange: np.ndarray, symbol: np.ndarray) -> np.ndarray:
    """uint64 hash of each row's `(exchange, symbol)` wire bytes, the same in every process.

    Both stages group and name keys with it: splitmix64 rounds over the four words of the two
    S16 columns, row by row in NumPy (no factorisation, no Python string per row).
    """
    h = np.zeros(len(exchange), np.uint64)
    for column in (_words(exchange), _words(symbol)):
        for j in range(column.shape[1]):
            h = mix64(h ^ column[:, j])
    return h


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """`index[i]` is the batch row of the i-th record in run order."""

    n: int
    index: np.ndarray
    keys: list[tuple[str, str]]
    runs: np.ndarray
    """(R, 5) int64: first seq, last seq, exch_ts of the first record, exch_ts of the last,
    and the run's session: `ASSIGN` (-1) when the tracker decides it (records seen first),
    the rows' own session when they replay what the table holds."""
    runs_per_key: np.ndarray
    """(K,) int32, in `keys` order; the runs of key k follow those of key k - 1."""


@dataclass(frozen=True, kw_only=True)
class RunOutcome:
    """Labels as segments `(length, label)` covering the records in run order."""

    seg_len: np.ndarray
    seg_label: np.ndarray
    new_gaps: list[tuple[int, int, int]] = field(default_factory=list)
    """(key index, first, last) of each hole left open by this batch."""
    abandoned: int = 0
    run_sessions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """(R,) the session each run's records belong to, in run order."""

    @classmethod
    def empty(cls) -> RunOutcome:
        return cls(seg_len=np.zeros(0, np.int64), seg_label=np.zeros(0, np.int8))

    def labels_sorted(self, n: int) -> np.ndarray:
        labels = np.repeat(self.seg_label.astype(np.int8), self.seg_len)
        if labels.shape[0] != n:
            raise ServiceError(f"tracker labelled {labels.shape[0]} records, expected {n}")
        return labels

    def sessions_sorted(self, plan: RunPlan) -> np.ndarray:
        """The session of every record, in run order."""
        lengths = plan.runs[:, 1] - plan.runs[:, 0] + 1
        if self.run_sessions.shape[0] != lengths.shape[0]:
            raise ServiceError("tracker sessions do not match the batch's runs")
        return np.repeat(self.run_sessions.astype(np.int64), lengths)


KeyCodes = tuple[np.ndarray, list[tuple[str, str]]]


def plan_runs(
    batch: TradeBatch,
    selected: np.ndarray,
    key_codes: KeyCodes | None = None,
    *,
    replay: bool = False,
    split_us: int | None = None,
) -> RunPlan:
    """Group by key and cut into runs. `key_codes`, if the caller has `batch.key_codes()`;
    `replay`: the rows carry the sessions the tracker gave them (rows the table holds);
    `split_us`: also cut where exch_ts moves by more than this between neighbours, so that
    a late record of an earlier session never shares a run with the current one's."""
    index = np.flatnonzero(selected)
    n = int(index.size)
    if n == 0:
        return RunPlan(
            n=0,
            index=index,
            keys=[],
            runs=np.zeros((0, 5), np.int64),
            runs_per_key=np.zeros(0, np.int32),
        )
    sub = batch if n == len(batch) else batch.take(index)
    seq, ts = sub.seq.astype(np.int64), sub.exch_ts.astype(np.int64)
    for name, col in (("seq", seq), ("exch_ts", ts)):
        if np.any(np.abs(col) >= MAX_ABS_VALUE):
            raise ValidationError(f"{name} outside ±2**53 cannot be tracked exactly")
    grouped = _group_by_name(sub) if key_codes is None else None
    if grouped is None:
        codes, keys = _codes_of(sub, index, key_codes, whole=n == len(batch))
        # Small codes sort by radix: several times faster than a stable int32 merge sort.
        narrow = codes.astype(np.int16) if len(keys) <= np.iinfo(np.int16).max else codes
        order = np.argsort(narrow, kind="stable")
        c = codes[order]
    else:
        order, c, keys = grouped
    s, t = seq[order], ts[order]
    cut = np.ones(n, bool)
    cut[1:] = (c[1:] != c[:-1]) | (s[1:] != s[:-1] + 1)
    if split_us is not None:
        cut[1:] |= np.abs(t[1:] - t[:-1]) > split_us
    if replay:
        session = sub.session.astype(np.int64)[order]
        if np.any((session < 0) | (session >= MAX_ABS_VALUE)):
            raise ValidationError("session outside [0, 2**53) cannot be tracked exactly")
        cut[1:] |= session[1:] != session[:-1]
    starts = np.flatnonzero(cut)
    ends = np.append(starts[1:], n) - 1
    sessions = session[starts] if replay else np.full(starts.size, ASSIGN, np.int64)
    runs = np.stack([s[starts], s[ends], t[starts], t[ends], sessions], axis=1)
    runs_per_key = np.bincount(c[starts], minlength=len(keys)).astype(np.int32)
    return RunPlan(
        n=n,
        index=index[order],
        keys=keys,
        runs=np.ascontiguousarray(runs, dtype=np.int64),
        runs_per_key=runs_per_key,
    )


def _group_by_name(sub: TradeBatch) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]] | None:
    """-> (rows grouped by key in arrival order, key index per grouped row, keys), or None.

    Hashing the fixed-width names row by row and sorting the hashes costs about half of a
    full factorisation. Every row is then checked against its group's first row, so a hash
    collision (None: the caller factorises) can never merge two keys.
    """
    names = name_hashes(sub.exchange, sub.symbol)
    order = grouped(names)
    ordered = names[order]
    new = np.ones(order.size, bool)
    new[1:] = ordered[1:] != ordered[:-1]
    c = np.cumsum(new) - 1
    firsts = order[new]
    representative = firsts[c]
    for column in (sub.exchange, sub.symbol):
        if not np.array_equal(column[order], column[representative]):
            return None
    exchanges, symbols = sub.exchange[firsts].tolist(), sub.symbol[firsts].tolist()
    keys = [(e.decode(), s.decode()) for e, s in zip(exchanges, symbols, strict=True)]
    return order, c, keys


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
