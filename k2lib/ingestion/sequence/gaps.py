"""Open gaps as kept in Redis by `RedisSequenceTracker`: what `k2 gaps` lists.

Reads only the keys in the `open-gaps` index, so a listing costs one SMEMBERS and one MGET
however many symbols are tracked. The index and the state keys share the prefix's hash tag
(`scripts.tagged`), so on a Redis Cluster both calls go to the one node holding that slot.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from k2lib.ingestion import scripts

__all__ = ["DEFAULT_PREFIX", "STATE_FIELD", "list_gaps", "parse_state"]

DEFAULT_PREFIX = "k2:seq:"
STATE_FIELD = "k:"
"""What follows the tagged prefix in a state key's name, before `scripts.name_field`."""


def parse_state(raw: bytes) -> tuple[int, int, int, list[tuple[int, int]]]:
    """A packed state string -> (first, last, last_ts, [(gap first, gap last), ...]).

    The string holds first, last, last_ts, session, h, h earlier sessions, a zero word if
    5 + h is odd, then the gap pairs; one written before sessions has only the first three
    (an odd number of words in all)."""
    values = np.frombuffer(raw, "<i8").tolist()
    first, last, last_ts = values[:3]
    head = 3 if len(values) % 2 else 5 + values[4] + (5 + values[4]) % 2
    pairs = values[head:]
    return first, last, last_ts, list(zip(pairs[0::2], pairs[1::2], strict=True))


def list_gaps(client: Any, prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]]:
    """`[{exchange, symbol, first, last}, ...]` sorted, one row per open gap.

    `client`: a `redis.Redis` or a `redis.cluster.RedisCluster`, decode_responses off."""
    scripts.check_client(client, "sequence tracker")
    base = scripts.tagged(prefix)
    names = sorted(client.smembers(f"{base}open-gaps"))
    if not names:
        return []
    rows: list[dict[str, Any]] = []
    skip = len(base) + len(STATE_FIELD)
    for name, raw in zip(names, client.mget(names), strict=True):
        if raw is None:
            continue
        exchange, symbol = scripts.parse_name(name.decode()[skip:])
        for lo, hi in parse_state(raw)[3]:
            rows.append({"exchange": exchange, "symbol": symbol, "first": lo, "last": hi})
    rows.sort(key=lambda r: (r["exchange"], r["symbol"], r["first"]))
    return rows
