"""Open gaps as kept in Redis by `RedisSequenceTracker`: what `k2 gaps` lists.

Reads only the keys in the `{prefix}open-gaps` index, so a listing costs one SMEMBERS and one
MGET however many symbols are tracked. Exchange names must not contain ':'.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from k2lib.errors import ConfigError

__all__ = ["DEFAULT_PREFIX", "list_gaps", "parse_state"]

DEFAULT_PREFIX = "k2:seq:"


def parse_state(raw: bytes) -> tuple[int, int, int, list[tuple[int, int]]]:
    """A packed state string -> (first, last, last_ts, [(gap first, gap last), ...])."""
    values = np.frombuffer(raw, "<i8").tolist()
    first, last, last_ts = values[:3]
    pairs = values[3:]
    return first, last, last_ts, list(zip(pairs[0::2], pairs[1::2], strict=True))


def list_gaps(client: Any, prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]]:
    """`[{exchange, symbol, first, last}, ...]` sorted, one row per open gap."""
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ConfigError("the sequence tracker needs a Redis client with decode_responses=False")
    names = sorted(client.smembers(f"{prefix}open-gaps"))
    if not names:
        return []
    rows: list[dict[str, Any]] = []
    for name, raw in zip(names, client.mget(names), strict=True):
        if raw is None:
            continue
        exchange, _, symbol = name.decode()[len(prefix) + len("key:") :].partition(":")
        for lo, hi in parse_state(raw)[3]:
            rows.append({"exchange": exchange, "symbol": symbol, "first": lo, "last": hi})
    rows.sort(key=lambda r: (r["exchange"], r["symbol"], r["first"]))
    return rows
