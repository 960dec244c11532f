"""The run logic in plain Python: the memory tracker's engine and the spec `classify.lua` mirrors.

Keep the two in step: the integration test compares them record for record.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from k2lib.ingestion.sequence import SequenceConfig

__all__ = ["KeyOutcome", "KeyState", "classify_key", "is_reset"]

IN_ORDER, DUPLICATE, GAP, LATE_FILL, OUT_OF_ORDER, RESET = range(6)
MAX_HISTORY = 15  # earlier sessions a key remembers, to place its late records


@dataclass(slots=True)
class KeyState:
    """One key's session (`session`: 0, or the exch_ts of the RESET that began it) and the
    sessions before it (`past`, oldest first, at most `MAX_HISTORY`). `gaps` holds
    `[first, last, origin]`, sorted and disjoint.

    `origin` is 0 for a gap recorded by an earlier batch. Within a batch, a hole opened by the
    GAP record of run r has origin r, and a hole left below `first` has origin -r.
    """

    first: int
    last: int
    ts: int
    session: int = 0
    past: list[int] = field(default_factory=list)
    gaps: list[list[int]] = field(default_factory=list)


@dataclass(slots=True)
class KeyOutcome:
    state: KeyState
    segments: list[list[int]]  # [length, label] in arrival order
    new_gaps: list[tuple[int, int]]
    abandoned: int
    run_sessions: list[int] = field(default_factory=list)
    """The session of each run's records, in arrival order."""


def _session(ts: int, config: SequenceConfig) -> int:
    return (ts - config.session_offset_us) // config.session_length_us


def is_reset(state: KeyState, seq: int, ts: int, config: SequenceConfig) -> bool:
    if state.last - seq > config.reset_jump and ts - state.ts > config.reset_quiet_us:
        return True
    return (
        config.session_length_us > 0
        and seq <= state.last
        and _session(ts, config) > _session(state.ts, config)
    )


def _fill(state: KeyState, lo: int, hi: int, segments: list[list[int]]) -> None:
    """Label seqs lo..hi (all within [first, last]): fills where a gap is, duplicates elsewhere."""
    gaps = state.gaps
    i = bisect_left([g[1] for g in gaps], lo)
    pos = lo
    while pos <= hi:
        if i < len(gaps) and gaps[i][0] <= hi:
            g_lo, g_hi, origin = gaps[i]
            if g_lo > pos:
                segments.append([g_lo - pos, DUPLICATE])
                pos = g_lo
            end = min(hi, g_hi)
            segments.append([end - pos + 1, LATE_FILL if origin == 0 else OUT_OF_ORDER])
            if pos == g_lo and end == g_hi:
                del gaps[i]
            elif pos == g_lo:
                gaps[i][0] = end + 1
            elif end == g_hi:
                gaps[i][1] = pos - 1
                i += 1
            else:
                gaps[i][1] = pos - 1
                gaps.insert(i + 1, [end + 1, g_hi, origin])
                i += 1
            pos = end + 1
        else:
            segments.append([hi - pos + 1, DUPLICATE])
            pos = hi + 1


def classify_key(
    state: KeyState | None,
    runs: Iterable[tuple[int, int, int, int, int] | list[int]],
    config: SequenceConfig,
) -> KeyOutcome:
    """Apply one key's runs `(first seq, last seq, first ts, last ts, session)` in arrival
    order. A run's session is `ASSIGN` (-1) for records seen first; otherwise it is the
    session the rows were stored in (a replay), which decides a reset instead of the rule."""
    sessions: list[int] = []
    segments: list[list[int]] = []
    openers: dict[int, int] = {}  # run number -> index of its GAP segment
    alive: set[int] = set()
    reported: list[tuple[int, int]] = []
    abandoned = 0
    for r, (a, b, ta, tb, given) in enumerate(runs, start=1):
        if state is None:
            state = KeyState(first=a, last=b, ts=tb, session=max(given, 0))
            segments.append([b - a + 1, IN_ORDER])
            sessions.append(state.session)
            continue
        half = config.late_margin_us
        if given < 0 and state.session > 0 and ta < state.session - half:
            # Timed before the quiet that began this session: a late record of an earlier one.
            given = next((p for p in reversed(state.past) if ta >= p - half), 0)
        if 0 <= given < state.session:  # rows of a session already over: the state stays
            segments.append([b - a + 1, DUPLICATE])
            sessions.append(given)
            continue
        if given > state.session if given >= 0 else is_reset(state, a, ta, config):
            session = given if given >= 0 else max(ta, state.session + 1)
            sessions.append(session)
            for g_lo, g_hi, origin in state.gaps:
                abandoned += g_hi - g_lo + 1
                if origin != 0:  # found in this batch: still reported, its GAP keeps its label
                    reported.append((g_lo, g_hi))
                    alive.add(origin)
            past = [*state.past, state.session][-MAX_HISTORY:]
            state = KeyState(first=a, last=b, ts=tb, session=session, past=past)
            segments.append([1, RESET])
            if b > a:
                segments.append([b - a, IN_ORDER])
            continue
        cur = a
        if cur < state.first:
            hi = min(b, state.first - 1)
            segments.append([hi - cur + 1, OUT_OF_ORDER])
            if hi < state.first - 1:
                state.gaps.insert(0, [hi + 1, state.first - 1, -r])
            state.first = a
            cur = hi + 1
        if cur <= b and cur <= state.last:
            hi = min(b, state.last)
            _fill(state, cur, hi, segments)
            cur = hi + 1
        if cur <= b:
            if cur > state.last + 1:
                state.gaps.append([state.last + 1, cur - 1, r])
                openers[r] = len(segments)
                segments.append([1, GAP])
                if b > cur:
                    segments.append([b - cur, IN_ORDER])
            else:
                segments.append([b - cur + 1, IN_ORDER])
            state.last, state.ts = b, tb
        sessions.append(state.session)
    if state is None:
        raise ValueError("classify_key needs at least one run")
    for g in state.gaps:
        if g[2] != 0:
            reported.append((g[0], g[1]))
            alive.add(g[2])
            g[2] = 0
    for r, index in openers.items():
        if r not in alive:  # its hole was filled within the batch: a swap, not a gap
            segments[index][1] = IN_ORDER
    return KeyOutcome(
        state=state,
        segments=segments,
        new_gaps=reported,
        abandoned=abandoned,
        run_sessions=sessions,
    )
