"""Two-tier deduplication: a rotating in-process Bloom filter, then Redis on a "maybe".

- `deduplicator.Deduplicator`: the batch API (`filter`, `warm`);
- `bloom`: the NumPy split-block Bloom filter and its rotating generations;
- `store`: the second tier's interface; `redis_store.RedisDedupStore` is the real one and
  `memory_store.MemoryDedupStore` an in-process twin for unit tests only.
"""

from __future__ import annotations

from k2lib.ingestion.dedup.bloom import BloomFilter, RotatingBloom
from k2lib.ingestion.dedup.deduplicator import DedupConfig, Deduplicator, DedupResult
from k2lib.ingestion.dedup.redis_store import RedisDedupStore
from k2lib.ingestion.dedup.store import DedupStore

__all__ = [
    "BloomFilter",
    "DedupConfig",
    "DedupResult",
    "DedupStore",
    "Deduplicator",
    "RedisDedupStore",
    "RotatingBloom",
]
