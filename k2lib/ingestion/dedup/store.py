"""The dedup tier's seam: what one batch asks of the store, and what the store answers.

`DedupStore.apply` runs one batch atomically (Redis: one Lua call). It works on bitmap
*spans* (consecutive bytes of one bucket, built by the deduplicator from the keys that the
Bloom filter never saw) and single-bit *probes* (keys the Bloom filter says "maybe"):

1. replay check: if a Kafka partition's high-water mark reaches into the batch, answer
   REPLAY with the marks and the offsets dropped as duplicates back then; change nothing;
2. read every span in the current window; if a bit is already set (another consumer wrote
   that key), answer OVERLAP with the old bytes; change nothing;
3. look up each probe in every live window: found = duplicate;
4. write: OR each span in, set each probe not found, refresh TTLs, remember the (partition,
   offset) of every duplicate and move the partitions' high-water marks. Answer OK.

Steps 1 and 2 make retries cheap and exact: the deduplicator re-plans and calls again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

__all__ = ["DedupStore", "StorePlan", "StoreVerdict", "Verdict"]


class Verdict(Enum):
    OK = 0
    REPLAY = 1
    OVERLAP = 2


@dataclass(frozen=True, kw_only=True)
class StorePlan:
    windows: list[int]
    """Live windows, newest (the one written) first."""
    ttl_s: int
    suffixes: list[str]
    """`{name hash hex}:{bucket}` per bitmap this batch touches; spans and probes index it."""
    spans: np.ndarray
    """(S, 3) int64: suffix index, first byte, byte count."""
    masks: bytes
    """The spans' bits, concatenated in span order."""
    probes: np.ndarray
    """(Q, 4) int64: suffix index, bit offset, Kafka partition, Kafka offset."""
    dropped: np.ndarray
    """(D, 2) int64: Kafka partition, offset of duplicates already decided (within the batch)."""
    partitions: np.ndarray
    """(P, 3) int64: Kafka partition, lowest offset, highest offset of the batch."""


@dataclass(frozen=True, kw_only=True)
class StoreVerdict:
    verdict: Verdict
    found: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """OK: per probe, whether a live window holds it."""
    high_water: dict[int, int] = field(default_factory=dict)
    """REPLAY: partition -> highest offset already deduplicated."""
    replay_dropped: set[tuple[int, int]] = field(default_factory=set)
    """REPLAY: (partition, offset) of records judged duplicates the first time."""
    overlaps: list[tuple[int, bytes]] = field(default_factory=list)
    """OVERLAP: (span index, the span's bytes as stored now)."""


class DedupStore(ABC):
    """The second tier. The Redis store is the default; a memory twin serves unit tests."""

    @abstractmethod
    def apply(self, plan: StorePlan) -> StoreVerdict:
        """One batch, atomically. Raises ServiceError if the store is unreachable."""

    @abstractmethod
    def scan(self, window: int) -> Iterator[tuple[str, bytes]]:
        """Every `(suffix, bitmap)` stored for one window (for warming a Bloom filter)."""
