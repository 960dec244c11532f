"""A faulty feed with its ground truth, for the sequence tracker's tests.

`FaultyStreamSpec` shapes one whole stream with its truth; `k2lib.feeds.FaultSpec` is the
production fault injector's spec for a live feed.

Each key plays one or more sessions of consecutive seqs. Within a session records are dropped,
duplicated (the copy arrives a few records later) and swapped with their neighbour; a new
session starts far below the previous one after a quiet period, so that `SequenceConfig`'s
reset rule (with the `reset_jump` and `reset_quiet_us` given here) sees it. With `reuse_seqs`
every session of a key numbers from the same start, as an exchange that restarts its
sequence does: the sessions' seqs overlap, and only the session tells their trades apart.
`late_copies` sends some records of earlier sessions again after the last one began (a
feed re-sent, a slow retransmit): duplicates of a session that is over.
The truth is computed from what was delivered, exactly as the tracker promises to report it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from k2lib.ingestion.sequence import Gap
from k2lib.wire.schema import TradeBatch

__all__ = ["FaultyStreamSpec", "StreamTruth", "faulty_stream", "missing_ranges"]

TICK_US = 1_000


@dataclass(frozen=True, kw_only=True)
class FaultyStreamSpec:
    keys: int = 3
    sessions: int = 1
    max_length: int = 60
    drop: float = 0.05
    duplicate: float = 0.05
    swap: float = 0.05
    reset_jump: int = 10
    reset_quiet_us: int = 1_000_000
    partitions: int = 2
    reuse_seqs: bool = False
    late_copies: float = 0.0
    """Per record of an earlier session: sent once more after the key's last one began."""


@dataclass(frozen=True, kw_only=True)
class StreamTruth:
    duplicates: int
    open_gaps: list[Gap] = field(default_factory=list)
    """The missing ranges of each key's last (non-empty) session, sorted."""
    abandoned: int = 0
    """Missing seqs of each key's earlier sessions."""
    resets: int = 0
    unique_records: int = 0
    """Distinct `(key, session, seq)` delivered: the rows an exactly-once ingest stores."""


def missing_ranges(seqs: set[int]) -> list[tuple[int, int]]:
    if not seqs:
        return []
    out: list[tuple[int, int]] = []
    prev = min(seqs)
    for s in range(min(seqs), max(seqs) + 1):
        if s in seqs:
            if s > prev + 1:
                out.append((prev + 1, s - 1))
            prev = s
    return out


def _session(rng: random.Random, spec: FaultyStreamSpec, start: int, base_ts: int) -> list[tuple]:
    # A reused start must still look like a reset: the session's last seq more than
    # `reset_jump` above the next one's first (its first two and its last are never dropped,
    # and a swap moves the first by one at most).
    shortest = spec.reset_jump + 3 if spec.reuse_seqs else 1
    length = rng.randint(shortest, max(shortest, spec.max_length))
    records = [(s, base_ts + (s - start) * TICK_US) for s in range(start, start + length)]
    keep = {start, start + 1, start + length - 1} if spec.reuse_seqs else set()
    records = [r for r in records if r[0] in keep or rng.random() >= spec.drop]
    out = list(records)
    for r in records:
        if rng.random() < spec.duplicate:
            at = min(len(out), out.index(r) + rng.randint(1, 5))
            out.insert(at, r)
    for i in range(len(out) - 1):
        if rng.random() < spec.swap:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def faulty_stream(rng: random.Random, spec: FaultyStreamSpec) -> tuple[TradeBatch, StreamTruth]:
    """One batch holding the whole stream in delivery order, and its truth.

    Kafka provenance: key k lives in partition `k % partitions`, offsets count per partition.
    """
    stride = spec.max_length + spec.reset_jump + 10
    quiet = spec.reset_quiet_us + max(spec.max_length, spec.reset_jump + 3) * TICK_US + 1
    per_key: list[list[tuple]] = []
    truth_dup = truth_abandoned = truth_resets = truth_unique = 0
    gaps: list[Gap] = []
    for k in range(spec.keys):
        delivered: list[tuple] = []
        sessions: list[list[tuple]] = []
        base = 1 + rng.randint(0, 5)
        for j in range(spec.sessions):
            start = base if spec.reuse_seqs else (spec.sessions - j) * stride + rng.randint(0, 5)
            played = _session(rng, spec, start, 1_700_000_000_000_000 + j * quiet)
            if played:
                sessions.append(played)
                delivered.extend(played)
        truth_resets += max(0, len(sessions) - 1)
        if spec.late_copies and len(sessions) > 1:
            copies = [r for p in sessions[:-1] for r in p if rng.random() < spec.late_copies]
            truth_dup += len(copies)
            delivered.extend(copies)
        for j, played in enumerate(sessions):
            seen = {s for s, _ in played}
            truth_dup += len(played) - len(seen)
            truth_unique += len(seen)
            holes = missing_ranges(seen)
            if j == len(sessions) - 1:
                gaps.extend(Gap("x", f"S{k}", lo, hi) for lo, hi in holes)
            else:
                truth_abandoned += sum(hi - lo + 1 for lo, hi in holes)
        per_key.append(delivered)
    order = [k for k, recs in enumerate(per_key) for _ in recs]
    rng.shuffle(order)  # interleave keys; each key keeps its own order
    cursor = [0] * spec.keys
    rows: list[tuple[int, int, int]] = []
    for k in order:
        seq, ts = per_key[k][cursor[k]]
        cursor[k] += 1
        rows.append((k, seq, ts))
    next_offset = [0] * max(1, spec.partitions)
    partition, offset = [], []
    for k, _, _ in rows:
        p = k % max(1, spec.partitions)
        partition.append(p)
        offset.append(next_offset[p])
        next_offset[p] += 1
    batch = TradeBatch.from_columns(
        exchange=["x"] * len(rows),
        symbol=[f"S{k}" for k, _, _ in rows],
        seq=[s for _, s, _ in rows],
        exch_ts=[t for _, _, t in rows],
        recv_ts=[t for _, _, t in rows],
        price=[1] * len(rows),
        qty=[1] * len(rows),
        partition=partition,
        offset=offset,
    )
    truth = StreamTruth(
        duplicates=truth_dup,
        open_gaps=sorted(gaps),
        abandoned=truth_abandoned,
        resets=truth_resets,
        unique_records=truth_unique,
    )
    return batch, truth
