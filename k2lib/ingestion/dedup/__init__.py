"""Two-tier deduplication: a rotating in-process Bloom filter, then Redis on a "maybe".

- `deduplicator.Deduplicator`: the batch API (`filter`, `warm`), one Redis call per batch;
- `two_phase.CommitAlignedDeduplicator`: `check` now, `record` after the Iceberg commit
  (ADR 008), for pipelines that must never hold keys for rows not yet stored;
- `bloom`: the NumPy split-block Bloom filter and its rotating generations;
- `store`: the second tier's interface; `redis_store.RedisDedupStore` is the real one and
  `memory_store.MemoryDedupStore` an in-process twin for unit tests only.
"""

from __future__ import annotations

from k2lib.ingestion.dedup.bloom import BloomFilter, RotatingBloom
from k2lib.ingestion.dedup.deduplicator import DedupConfig, Deduplicator, DedupResult
from k2lib.ingestion.dedup.redis_store import RedisDedupStore
from k2lib.ingestion.dedup.store import DedupStore
from k2lib.ingestion.dedup.two_phase import CommitAlignedDeduplicator, StagedKeys

__all__ = [
    "BloomFilter",
    "CommitAlignedDeduplicator",
    "DedupConfig",
    "DedupResult",
    "DedupStore",
    "Deduplicator",
    "RedisDedupStore",
    "RotatingBloom",
    "StagedKeys",
]
