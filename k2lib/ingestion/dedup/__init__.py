"""Two-tier deduplication: a rotating in-process Bloom filter, then Redis on a "maybe".

- `two_phase.CommitAlignedDeduplicator`: `check` now, `record` after the Iceberg commit
  (ADR 008), so Redis never holds keys for rows not yet stored;
- `bloom`: the NumPy split-block Bloom filter and its rotating generations;
- `planner`: a batch as bitmap spans and probes, in NumPy;
- `store`: the second tier's interface (`probe`, `record`, `scan`);
  `redis_store.RedisDedupStore` is the real one, and `k2lib.testing.MemoryDedupStore` an
  in-process twin for unit tests only.
"""

from __future__ import annotations

from k2lib.ingestion.dedup.bloom import BloomFilter, RotatingBloom
from k2lib.ingestion.dedup.redis_store import RedisDedupStore
from k2lib.ingestion.dedup.store import DedupStore
from k2lib.ingestion.dedup.two_phase import CommitAlignedDeduplicator, DedupConfig, StagedKeys

__all__ = [
    "BloomFilter",
    "CommitAlignedDeduplicator",
    "DedupConfig",
    "DedupStore",
    "RedisDedupStore",
    "RotatingBloom",
    "StagedKeys",
]
