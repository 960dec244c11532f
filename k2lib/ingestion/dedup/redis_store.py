"""The Redis dedup tier: one EVALSHA of `dedup.lua` per batch.

Keys under `T = scripts.tagged(prefix)` (prefix default `k2:dedup:`; one prefix per topic,
since offsets are kept per partition number), e.g. `k2:dedup:{9f86d081}`:

- `{T}g{window}`: the window's keys, a hash of bitmaps (field: name hash and bucket as
  16 little-endian bytes; one bit per seq), with a TTL of `generations * window_s` refreshed
  on write: it outlives the window's place in the horizon;
- `{T}offsets`: Kafka partition -> the offsets deduplicated, as ranges (replays);
- `{T}dropped:{partition}`: offsets judged duplicates, so a replay decides the same way.

The offsets hash and the live windows are declared in KEYS; the `dropped` sets are named in
the script from the partitions it meets. All of them carry the prefix's hash tag, so on a
Redis Cluster a batch is one EVALSHA on one slot (docs/decisions/013-redis-cluster-keys.md),
routed, and redirected when slots move, by redis-py's `RedisCluster`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import redis as redis_py

from k2lib.errors import ServiceError
from k2lib.ingestion import scripts
from k2lib.ingestion.dedup.store import DedupStore, StorePlan, StoreVerdict, Verdict

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
        source = scripts.load_script("k2lib.ingestion.dedup", "dedup.lua")
        self._script = client.register_script(source)
        self._base = scripts.tagged(prefix)
        self._offsets_key = f"{self._base}offsets"

    def window_key(self, window: int) -> str:
        """The hash holding one window's bitmaps."""
        return f"{self._base}g{window}"

    def apply(self, plan: StorePlan) -> StoreVerdict:
        spans = plan.spans.astype("<i4").tobytes()
        probes = np.empty(len(plan.probes), [("at", "<i4", 2), ("origin", "<i8", 2)])
        probes["at"] = plan.probes[:, :2]
        probes["origin"] = plan.probes[:, 2:]
        args: list[bytes | str | int] = [
            self._base,
            plan.ttl_s,
            plan.fields.astype("<u8").tobytes(),
            spans,
            plan.masks,
            probes.tobytes(),
            plan.dropped.astype("<i8").tobytes(),
            plan.offsets.astype("<i8").tobytes(),
            plan.mode.value,
        ]
        try:
            keys = [self._offsets_key, *(self.window_key(w) for w in plan.windows)]
            reply = self._script(keys=keys, args=args)
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis dedup tier: {exc}") from exc
        kind = Verdict(int(reply[0]))
        if kind is Verdict.OK:
            return StoreVerdict(
                verdict=kind,
                found=np.frombuffer(reply[1], np.uint8) == 1,
                already_set=int(reply[2]) if len(reply) > 2 else 0,
            )
        if kind is Verdict.REPLAY:
            past = np.frombuffer(reply[2], "<i8").reshape(-1, 2).tolist()
            return StoreVerdict(
                verdict=kind,
                replayed=np.frombuffer(reply[1], "<i8").reshape(-1, 3),
                replay_dropped={(int(p), int(o)) for p, o in past},
            )
        index = np.frombuffer(reply[1], "<i4").tolist()
        lengths = plan.spans[index, 2].tolist()
        bounds = np.cumsum([0, *lengths]).tolist()
        stored: bytes = reply[2]
        return StoreVerdict(
            verdict=kind,
            overlaps=[(i, stored[bounds[k] : bounds[k + 1]]) for k, i in enumerate(index)],
        )

    def forget_offsets(self) -> None:
        try:
            stale = scripts.scan_prefix(self._client, f"{self._base}dropped:")
            scripts.delete_keys(self._client, [self._offsets_key.encode(), *stale])
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis dedup tier: {exc}") from exc

    def scan(self, window: int) -> Iterator[tuple[bytes, bytes]]:
        try:
            yield from self._client.hscan_iter(self.window_key(window), count=SCAN_COUNT)
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis dedup tier: {exc}") from exc
