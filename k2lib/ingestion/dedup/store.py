"""The dedup tier's seam: what one batch asks of the store, and what the store answers.

`DedupStore.apply` runs one batch atomically (Redis: one Lua call). It works on bitmap
*spans* (consecutive bytes of one bucket, built by the deduplicator from the keys that the
Bloom filter never saw) and single-bit *probes* (keys the Bloom filter says "maybe"):

1. replay check: if some of the batch's Kafka offsets were deduplicated before, answer
   REPLAY with those offsets and the ones dropped as duplicates back then; change nothing;
2. read every span in the current window; if a bit is already set (another consumer wrote
   that key), answer OVERLAP with the old bytes; change nothing;
3. look up each probe in every live window: found = duplicate;
4. write: OR each span in, set each probe not found, refresh the window's TTL, remember
   the (partition, offset) of every duplicate and add the batch's offsets to the ledger.
   Answer OK.

Steps 1 and 2 make retries cheap and exact: the deduplicator re-plans and calls again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

__all__ = ["DedupStore", "Mode", "StorePlan", "StoreVerdict", "Verdict"]


class Mode(Enum):
    """FILTER is the one-call batch above; PROBE (step 3 only, no write) and RECORD (step 4
    for spans only; keys already set are counted, not refused) serve the commit-aligned
    two-phase use (`two_phase.py`)."""

    FILTER = "filter"
    PROBE = "probe"
    RECORD = "record"


class Verdict(Enum):
    OK = 0
    REPLAY = 1
    OVERLAP = 2


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
    """(Q, 4) int64: field index, bit offset, Kafka partition, Kafka offset."""
    dropped: np.ndarray
    """(D, 2) int64: Kafka partition, offset of duplicates already decided (within the batch)."""
    offsets: np.ndarray
    """(O, 3) int64: runs of consecutive Kafka offsets (partition, first, last) in the batch."""
    mode: Mode = Mode.FILTER


@dataclass(frozen=True, kw_only=True)
class StoreVerdict:
    verdict: Verdict
    found: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """OK: per probe, whether a live window holds it."""
    replayed: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    """REPLAY: (partition, first, last) offsets deduplicated before."""
    replay_dropped: set[tuple[int, int]] = field(default_factory=set)
    """REPLAY: (partition, offset) of records judged duplicates the first time."""
    overlaps: list[tuple[int, bytes]] = field(default_factory=list)
    """OVERLAP: (span index, the span's bytes as stored now)."""
    already_set: int = 0
    """RECORD: keys whose bits were set already (another consumer recorded them first)."""


class DedupStore(ABC):
    """The second tier. The Redis store is the default; a memory twin serves unit tests."""

    @abstractmethod
    def apply(self, plan: StorePlan) -> StoreVerdict:
        """One batch, atomically. Raises ServiceError if the store is unreachable."""

    @abstractmethod
    def forget_offsets(self) -> None:
        """Drop the offsets ledger and the past duplicates' offsets (a broker reset)."""

    @abstractmethod
    def scan(self, window: int) -> Iterator[tuple[bytes, bytes]]:
        """Every `(field, bitmap)` stored for one window (for warming a Bloom filter)."""
