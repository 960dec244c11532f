"""The Redis dedup tier: one EVALSHA of `dedup.lua` per batch.

Keys under `prefix` (default `k2:dedup:`; one prefix per topic, since offsets are kept
per partition number):

- `{prefix}g{window}`: the window's keys, a hash of bitmaps (field: name hash and bucket as
  16 little-endian bytes; one bit per seq), with a TTL of `generations * window_s` refreshed
  on write: it outlives the window's place in the horizon;
- `{prefix}offsets`: Kafka partition -> the offsets deduplicated, as ranges (replays);
- `{prefix}dropped:{partition}`: offsets judged duplicates, so a replay decides the same way.

The window keys are named inside the script, so this needs one Redis, not a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import redis as redis_py

from k2lib.errors import ConfigError, ServiceError
from k2lib.ingestion.dedup.store import DedupStore, StorePlan, StoreVerdict, Verdict
from k2lib.ingestion.scripts import load_script

__all__ = ["DEFAULT_PREFIX", "RedisDedupStore"]

DEFAULT_PREFIX = "k2:dedup:"
SCAN_COUNT = 1_000


class RedisDedupStore(DedupStore):
    def __init__(self, client: redis_py.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigError("the dedup store needs a Redis client with decode_responses=False")
        self._client = client
        self.prefix = prefix
        source = load_script("k2lib.ingestion.dedup", "dedup.lua")
        self._script = client.register_script(source)
        self._offsets_key = f"{prefix}offsets"

    def apply(self, plan: StorePlan) -> StoreVerdict:
        spans = plan.spans.astype("<i4").tobytes()
        probes = np.empty(len(plan.probes), [("at", "<i4", 2), ("origin", "<i8", 2)])
        probes["at"] = plan.probes[:, :2]
        probes["origin"] = plan.probes[:, 2:]
        args: list[bytes | str | int] = [
            self.prefix,
            "".join(f"{w}\n" for w in plan.windows),
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
            reply = self._script(keys=[self._offsets_key], args=args)
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
            stale = list(self._client.scan_iter(match=f"{self.prefix}dropped:*", count=SCAN_COUNT))
            self._client.delete(self._offsets_key, *stale)
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis dedup tier: {exc}") from exc

    def scan(self, window: int) -> Iterator[tuple[bytes, bytes]]:
        try:
            yield from self._client.hscan_iter(f"{self.prefix}g{window}", count=SCAN_COUNT)
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis dedup tier: {exc}") from exc
