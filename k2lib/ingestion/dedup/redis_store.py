"""The Redis dedup tier: one EVALSHA of `dedup.lua` per batch.

Keys under `prefix` (default `k2:dedup:`; one prefix per topic, since the high-water marks
are per partition number):

- `{prefix}g{window}:{name hash hex}:{bucket}`: the window's keys, one bit per seq, with a
  TTL of the dedup horizon (refreshed on write);
- `{prefix}high-water`: Kafka partition -> highest offset deduplicated (replay detection);
- `{prefix}dropped:{partition}`: offsets judged duplicates, so a replay decides the same way.

Bitmap keys are named inside the script (hundreds of key arguments cost more to send than the
work), so this needs one Redis, not a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources

import numpy as np
import redis as redis_py

from k2lib.errors import ConfigError, ServiceError
from k2lib.ingestion.dedup.store import DedupStore, StorePlan, StoreVerdict, Verdict

__all__ = ["DEFAULT_PREFIX", "RedisDedupStore"]

DEFAULT_PREFIX = "k2:dedup:"
SCAN_COUNT = 1_000


class RedisDedupStore(DedupStore):
    def __init__(self, client: redis_py.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigError("the dedup store needs a Redis client with decode_responses=False")
        self._client = client
        self.prefix = prefix
        source = resources.files("k2lib.ingestion.dedup").joinpath("dedup.lua").read_text()
        self._script = client.register_script(source)
        self._high_water_key = f"{prefix}high-water"

    def apply(self, plan: StorePlan) -> StoreVerdict:
        spans = plan.spans.astype("<i4").tobytes()
        probes = np.empty(len(plan.probes), [("at", "<i4", 2), ("origin", "<i8", 2)])
        probes["at"] = plan.probes[:, :2]
        probes["origin"] = plan.probes[:, 2:]
        args: list[bytes | str | int] = [
            self.prefix,
            "".join(f"{w}\n" for w in plan.windows),
            plan.ttl_s,
            "".join(f"{s}\n" for s in plan.suffixes),
            spans,
            plan.masks,
            probes.tobytes(),
            plan.dropped.astype("<i8").tobytes(),
            plan.partitions.astype("<i8").tobytes(),
        ]
        try:
            reply = self._script(keys=[self._high_water_key], args=args)
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis dedup tier: {exc}") from exc
        kind = Verdict(int(reply[0]))
        if kind is Verdict.OK:
            return StoreVerdict(verdict=kind, found=np.frombuffer(reply[1], np.uint8) == 1)
        if kind is Verdict.REPLAY:
            marks = np.frombuffer(reply[1], "<i8").reshape(-1, 2).tolist()
            past = np.frombuffer(reply[2], "<i8").reshape(-1, 2).tolist()
            return StoreVerdict(
                verdict=kind,
                high_water={int(p): int(hw) for p, hw in marks},
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

    def scan(self, window: int) -> Iterator[tuple[str, bytes]]:
        head = f"{self.prefix}g{window}:"
        try:
            names = list(self._client.scan_iter(match=f"{head}*", count=SCAN_COUNT))
            for start in range(0, len(names), SCAN_COUNT):
                chunk = names[start : start + SCAN_COUNT]
                for name, bitmap in zip(chunk, self._client.mget(chunk), strict=True):
                    if isinstance(bitmap, bytes) and bitmap:
                        yield name.decode()[len(head) :], bitmap
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis dedup tier: {exc}") from exc
