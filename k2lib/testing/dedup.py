"""An in-process twin of the Redis dedup tier (`RedisDedupStore`), for unit tests only.

It follows `dedup.lua` call for call but never expires anything: only live windows are ever
asked, so an expired window and a forgotten one look the same.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from k2lib.ingestion.dedup.store import DedupStore, StorePlan

__all__ = ["MemoryDedupStore"]


class MemoryDedupStore(DedupStore):
    def __init__(self) -> None:
        self.bitmaps: dict[tuple[int, bytes], bytearray] = {}
        self.calls = 0
        self._lock = threading.Lock()

    def _bitmap(self, window: int, field: bytes) -> bytearray:
        return self.bitmaps.setdefault((window, field), bytearray())

    def probe(self, plan: StorePlan) -> np.ndarray:
        with self._lock:
            self.calls += 1
            names = _field_names(plan)
            return np.array(
                [
                    any(_get_bit(self._bitmap(w, names[s]), bit) for w in plan.windows)
                    for s, bit in plan.probes.tolist()
                ],
                dtype=bool,
            )

    def record(self, plan: StorePlan) -> int:
        with self._lock:
            self.calls += 1
            names = _field_names(plan)
            already = 0
            at = 0
            for sidx, first, length in plan.spans.tolist():
                bitmap = self._bitmap(plan.windows[0], names[sidx])
                if len(bitmap) < first + length:
                    bitmap.extend(bytes(first + length - len(bitmap)))
                old, mask = bitmap[first : first + length], plan.masks[at : at + length]
                already += sum(bin(a & b).count("1") for a, b in zip(old, mask, strict=True))
                merged = bytes(a | b for a, b in zip(old, mask, strict=True))
                bitmap[first : first + length] = merged
                at += length
            return already

    def scan(self, window: int) -> Iterator[tuple[bytes, bytes]]:
        with self._lock:
            items = [(s, bytes(b)) for (w, s), b in self.bitmaps.items() if w == window and b]
        yield from items


def _field_names(plan: StorePlan) -> list[bytes]:
    return [row.tobytes() for row in plan.fields.astype("<u8")]


def _get_bit(bitmap: bytearray, bit: int) -> bool:
    byte = bit >> 3
    return byte < len(bitmap) and bool(bitmap[byte] & (0x80 >> (bit & 7)))
