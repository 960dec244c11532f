"""The dedup tier's seam: the three calls the commit-aligned deduplicator makes of the store.

A `StorePlan` works on bitmap *spans* (consecutive bytes of one bucket, built by the planner
from keys to record) and single-bit *probes* (keys the Bloom filter says "maybe"):

- `probe(plan)`: for each probe, whether some live window holds the key. Writes nothing;
- `record(plan)`: OR each span into the current window and refresh its TTL, atomically
  (Redis: one Lua call). Bits set already are counted, not refused: another consumer
  recorded those keys first;
- `scan(window)`: every bitmap stored for one window, to warm a Bloom filter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["DedupStore", "StorePlan"]


@dataclass(frozen=True, kw_only=True)
class StorePlan:
    windows: list[int]
    """Live windows, newest (the one written) first."""
    ttl_s: int
    fields: np.ndarray
    """(F, 2) uint64: name hash, bucket of each bitmap the batch touches (spans and probes
    index these rows). Stored as the 16-byte little-endian field name."""
    spans: np.ndarray
    """(S, 3) int64: field index, first byte, byte count."""
    masks: bytes
    """The spans' bits, concatenated in span order."""
    probes: np.ndarray
    """(Q, 2) int64: field index, bit offset."""


class DedupStore(ABC):
    """The second tier. The Redis store is the default; a memory twin serves unit tests."""

    @abstractmethod
    def probe(self, plan: StorePlan) -> np.ndarray:
        """bool per probe: held by a live window. Raises ServiceError if unreachable."""

    @abstractmethod
    def record(self, plan: StorePlan) -> int:
        """Write the spans, atomically. -> keys whose bits were set already."""

    @abstractmethod
    def scan(self, window: int) -> Iterator[tuple[bytes, bytes]]:
        """Every `(field, bitmap)` stored for one window (for warming a Bloom filter)."""
