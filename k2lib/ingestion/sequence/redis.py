"""The Redis tracker: one EVALSHA of `classify.lua` per batch.

The script reads every key's state, classifies the batch's runs and writes the new state in
one atomic step, so consumers sharing a Redis never race (there is no read-then-write on the
client). If Redis fails the call raises `ServiceError` and nothing local has changed: the
caller (through the Redis circuit breaker) may retry the same batch.

Keys, under `T = scripts.tagged(prefix)` (prefix default `k2:seq:`), e.g. `k2:seq:{1a2b3c4d}`:

- `{T}k:{len(exchange)}:{exchange}:{symbol}`: packed state, `<i8` first, last, last_ts,
  session, the earlier sessions (see `classify.lua`), gap pairs (the length prefix keeps
  names holding ':' apart, see `scripts.name_field`);
- `{T}open-gaps`: the set of state keys that have open gaps (see `gaps.list_gaps`).

One prefix per topic. Every key carries the prefix's hash tag, so on a Redis Cluster they all
live in one slot and a batch is still one atomic EVALSHA (redis-py's `RedisCluster` routes it
by KEYS[1] and follows redirections). The state keys are named inside the script rather than
declared: they share KEYS[1]'s slot, and sending hundreds of key arguments costs more than
the classification. Why one slot per prefix and not one per symbol:
docs/decisions/013-redis-cluster-keys.md.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import redis as redis_py
from prometheus_client import CollectorRegistry

from k2lib.errors import ServiceError
from k2lib.ingestion import scripts
from k2lib.ingestion.sequence import Gap, SequenceConfig, SequenceTracker
from k2lib.ingestion.sequence._runs import RunOutcome, RunPlan
from k2lib.ingestion.sequence.gaps import DEFAULT_PREFIX, STATE_FIELD, list_gaps

__all__ = ["DEFAULT_PREFIX", "RedisSequenceTracker", "load_script"]

MAX_CACHED_NAMES = 100_000
_SEGMENT = np.dtype([("length", "<i4"), ("label", "i1")])
_NEW_GAP = np.dtype([("key", "<i4"), ("first", "<i8"), ("last", "<i8")])
_RUN_SESSIONS = np.dtype([("runs", "<i4"), ("session", "<i8")])


def load_script(name: str) -> str:
    return scripts.load_script("k2lib.ingestion.sequence", name)


class RedisSequenceTracker(SequenceTracker):
    """State per `(exchange, symbol)` in Redis; safe for several consumers and restarts."""

    def __init__(
        self,
        client: redis_py.Redis | redis_py.RedisCluster,
        *,
        prefix: str = DEFAULT_PREFIX,
        config: SequenceConfig | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """`client`: a `redis.Redis` or a `redis.cluster.RedisCluster`, decode_responses off."""
        scripts.check_client(client, "sequence tracker")
        super().__init__(config=config, registry=registry)
        self._client: Any = client
        self.prefix = prefix
        self._script = client.register_script(load_script("classify.lua"))
        base = scripts.tagged(prefix)
        self._index_key = f"{base}open-gaps"
        self._key_prefix = f"{base}{STATE_FIELD}"
        self._key_names: dict[tuple[str, str], bytes] = {}
        cfg = self.config
        self._config_arg = struct.pack(
            "<qqqq",
            cfg.reset_jump,
            cfg.reset_quiet_us,
            cfg.session_length_us,
            cfg.session_offset_us,
        )

    def _names(self, keys: list[tuple[str, str]]) -> bytes:
        cache = self._key_names
        out = []
        for key in keys:
            name = cache.get(key)
            if name is None:
                if len(cache) > MAX_CACHED_NAMES:
                    cache.clear()
                name = cache[key] = f"{scripts.name_field(*key)}\n".encode()
            out.append(name)
        return b"".join(out)

    def _apply(self, plan: RunPlan) -> RunOutcome:
        args: list[bytes | str] = [
            plan.runs.astype("<i8").tobytes(),
            plan.runs_per_key.astype("<i4").tobytes(),
            self._config_arg,
            self._key_prefix,
            self._names(plan.keys),
        ]
        try:
            reply = self._script(keys=[self._index_key], args=args)
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis sequence tracker: {exc}") from exc
        segments = np.frombuffer(reply[0], _SEGMENT)
        gaps = np.frombuffer(reply[1], _NEW_GAP)
        sessions = np.frombuffer(reply[3], _RUN_SESSIONS)
        return RunOutcome(
            seg_len=segments["length"].astype(np.int64),
            seg_label=segments["label"].astype(np.int8),
            new_gaps=[(int(k), int(lo), int(hi)) for k, lo, hi in gaps.tolist()],
            abandoned=int(reply[2]),
            run_sessions=np.repeat(sessions["session"], sessions["runs"]).astype(np.int64),
        )

    def open_gaps(self) -> list[Gap]:
        try:
            rows = list_gaps(self._client, self.prefix)
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis sequence tracker: {exc}") from exc
        return [Gap(r["exchange"], r["symbol"], r["first"], r["last"]) for r in rows]
