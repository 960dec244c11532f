"""The Redis dedup tier: one EVALSHA of `dedup.lua` per call.

Keys under `T = scripts.tagged(prefix)` (prefix default `k2:dedup:`), e.g.
`k2:dedup:{9f86d081}`:

- `{T}g{window}`: the window's keys, a hash of bitmaps (field: name hash and bucket as
  16 little-endian bytes; one bit per seq), with a TTL of `generations * window_s` refreshed
  on write: it outlives the window's place in the horizon.

The live windows are declared in KEYS and carry the prefix's hash tag, so on a Redis Cluster
a call is one EVALSHA on one slot (docs/decisions/013-redis-cluster-keys.md), routed, and
redirected when slots move, by redis-py's `RedisCluster`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import redis as redis_py

from k2lib.errors import ServiceError
from k2lib.ingestion import scripts
from k2lib.ingestion.dedup.store import DedupStore, StorePlan

__all__ = ["DEFAULT_PREFIX", "RedisDedupStore"]

DEFAULT_PREFIX = "k2:dedup:"
SCAN_COUNT = scripts.SCAN_COUNT


class RedisDedupStore(DedupStore):
    def __init__(
        self, client: redis_py.Redis | redis_py.RedisCluster, *, prefix: str = DEFAULT_PREFIX
    ) -> None:
        """`client`: a `redis.Redis` or a `redis.cluster.RedisCluster`, decode_responses off."""
        scripts.check_client(client, "dedup store")
        self._client: Any = client
        self.prefix = prefix
        self._script = client.register_script(
            scripts.load_script("k2lib.ingestion.dedup", "dedup.lua")
        )
        self._base = scripts.tagged(prefix)

    def window_key(self, window: int) -> str:
        """The hash holding one window's bitmaps."""
        return f"{self._base}g{window}"

    def probe(self, plan: StorePlan) -> np.ndarray:
        return np.frombuffer(self._call(plan, "probe"), np.uint8) == 1

    def record(self, plan: StorePlan) -> int:
        return int(self._call(plan, "record"))

    def _call(self, plan: StorePlan, mode: str) -> Any:
        args: list[bytes | str | int] = [
            plan.ttl_s,
            plan.fields.astype("<u8").tobytes(),
            plan.spans.astype("<i4").tobytes(),
            plan.masks,
            plan.probes.astype("<i4").tobytes(),
            mode,
        ]
        try:
            return self._script(keys=[self.window_key(w) for w in plan.windows], args=args)
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis dedup tier: {exc}") from exc

    def scan(self, window: int) -> Iterator[tuple[bytes, bytes]]:
        try:
            yield from self._client.hscan_iter(self.window_key(window), count=SCAN_COUNT)
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis dedup tier: {exc}") from exc
