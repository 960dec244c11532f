"""An in-process twin of the Redis dedup tier, for unit tests only.

It follows `dedup.lua` step for step (see store.py) but never expires anything: only live
windows are ever asked, so an expired window and a forgotten one look the same.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from k2lib.ingestion.dedup.store import DedupStore, Mode, StorePlan, StoreVerdict, Verdict
from k2lib.ingestion.sequence._runs import OffsetLedger

__all__ = ["MemoryDedupStore"]


class MemoryDedupStore(DedupStore):
    def __init__(self) -> None:
        self.bitmaps: dict[tuple[int, bytes], bytearray] = {}
        self.offsets = OffsetLedger()
        self.dropped: dict[int, set[int]] = {}
        self.calls = 0
        self._lock = threading.Lock()

    def _bitmap(self, window: int, field: bytes) -> bytearray:
        return self.bitmaps.setdefault((window, field), bytearray())

    def apply(self, plan: StorePlan) -> StoreVerdict:
        with self._lock:
            self.calls += 1
            return self._apply(plan)

    def _apply(self, plan: StorePlan) -> StoreVerdict:
        names = [row.tobytes() for row in plan.fields.astype("<u8")]
        replayed = self.offsets.overlaps(plan.offsets)
        if replayed.size:
            past = {
                (p, o)
                for p, lo, hi in replayed.tolist()
                for o in self.dropped.get(p, set())
                if lo <= o <= hi
            }
            return StoreVerdict(verdict=Verdict.REPLAY, replayed=replayed, replay_dropped=past)
        current = plan.windows[0]
        olds: list[bytes] = []
        overlaps: list[tuple[int, bytes]] = []
        already = 0
        at = 0
        for i, (sidx, first, length) in enumerate(plan.spans.tolist()):
            bitmap = self._bitmap(current, names[sidx])
            old = bytes(bitmap[first : first + length])
            mask = plan.masks[at : at + length]
            olds.append(old)
            both = sum(bin(a & b).count("1") for a, b in zip(old, mask, strict=False))
            if both:
                overlaps.append((i, old.ljust(length, b"\0")))
                already += both
            at += length
        if overlaps and plan.mode is Mode.FILTER:
            return StoreVerdict(verdict=Verdict.OVERLAP, overlaps=overlaps)
        found = np.array(
            [
                any(_get_bit(self._bitmap(w, names[s]), bit) for w in plan.windows)
                for s, bit, _, _ in plan.probes.tolist()
            ],
            dtype=bool,
        )
        if plan.mode is Mode.PROBE:
            return StoreVerdict(verdict=Verdict.OK, found=found)
        at = 0
        for (sidx, first, length), old in zip(plan.spans.tolist(), olds, strict=True):
            bitmap = self._bitmap(current, names[sidx])
            if len(bitmap) < first + length:
                bitmap.extend(bytes(first + length - len(bitmap)))
            mask = plan.masks[at : at + length]
            merged = bytes(a | b for a, b in zip(old.ljust(length, b"\0"), mask, strict=True))
            bitmap[first : first + length] = merged
            at += length
        for (sidx, bit, partition, offset), hit in zip(plan.probes.tolist(), found, strict=True):
            if hit:
                self._remember(partition, offset)
            else:
                _set_bit(self._bitmap(current, names[sidx]), bit)
        for partition, offset in plan.dropped.tolist():
            self._remember(partition, offset)
        self.offsets.add(plan.offsets)
        return StoreVerdict(verdict=Verdict.OK, found=found, already_set=already)

    def _remember(self, partition: int, offset: int) -> None:
        if partition >= 0 and offset >= 0:
            self.dropped.setdefault(partition, set()).add(offset)

    def forget_offsets(self) -> None:
        with self._lock:
            self.offsets, self.dropped = OffsetLedger(), {}

    def scan(self, window: int) -> Iterator[tuple[bytes, bytes]]:
        with self._lock:
            items = [(s, bytes(b)) for (w, s), b in self.bitmaps.items() if w == window and b]
        yield from items


def _get_bit(bitmap: bytearray, bit: int) -> bool:
    byte = bit >> 3
    return byte < len(bitmap) and bool(bitmap[byte] & (0x80 >> (bit & 7)))


def _set_bit(bitmap: bytearray, bit: int) -> None:
    byte = bit >> 3
    if len(bitmap) <= byte:
        bitmap.extend(bytes(byte + 1 - len(bitmap)))
    bitmap[byte] |= 0x80 >> (bit & 7)
