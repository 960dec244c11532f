"""Redis plumbing shared by the sequence tracker, the dedup tier and the state ledger.

- `load_script`: a Lua script shipped in a package;
- `tagged`: the key prefix with its hash tag. Every key under one prefix (one topic's sequence
  state, or its dedup keys, or its ledger) lands in one Redis Cluster slot, so each Lua call
  touches one slot and stays one atomic EVALSHA per batch (docs/decisions/013);
- `name_field`/`parse_name`: `(exchange, symbol)` as one string that cannot collide when the
  names contain ':';
- `check_client`, `scan_prefix`, `delete_keys`, `drop_prefix`: the same calls on `redis.Redis`
  and on `redis.cluster.RedisCluster` (which scans every primary and splits deletes per slot).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib import resources
from typing import Any

from k2lib.errors import ConfigError, ValidationError

__all__ = [
    "DELETE_CHUNK",
    "SCAN_COUNT",
    "check_client",
    "delete_keys",
    "drop_prefix",
    "load_script",
    "name_field",
    "parse_name",
    "scan_prefix",
    "tagged",
]

SCAN_COUNT = 1_000
DELETE_CHUNK = 1_000


def load_script(package: str, name: str) -> str:
    """The text of `package/name`."""
    return resources.files(package).joinpath(name).read_text()


def tagged(prefix: str) -> str:
    """`prefix` followed by a hash tag derived from it, e.g. `k2:t:tb:seq:{5d41402a}`.

    Redis Cluster hashes only what lies between a key's first `{` and the next `}`; every key
    built on the result shares the text up to and including the tag's `}`, so whatever
    `prefix` holds (even braces), all its keys map to one slot. Different prefixes (topics,
    tables, the two stages) get different tags and spread over the cluster's nodes."""
    digest = hashlib.blake2b(prefix.encode(), digest_size=4).hexdigest()
    return f"{prefix}{{{digest}}}"


def name_field(exchange: str, symbol: str) -> str:
    """`<len(exchange)>:<exchange>:<symbol>`: the length says where the exchange ends, so
    ("a:b", "c") and ("a", "b:c") are `3:a:b:c` and `1:a:b:c`. Names are printable ASCII
    without spaces (the wire codec checks), so they never hold the scripts' '\\n' separator."""
    return f"{len(exchange)}:{exchange}:{symbol}"


def parse_name(field: str) -> tuple[str, str]:
    """The inverse of `name_field`."""
    head, sep, rest = field.partition(":")
    if not sep or not head.isdigit() or len(rest) < int(head) + 1 or rest[int(head)] != ":":
        raise ValidationError(f"not a K2 key name: {field!r}")
    n = int(head)
    return rest[:n], rest[n + 1 :]


def check_client(client: Any, what: str) -> None:
    """The stages pack binary state: refuse a client that would decode replies to str."""
    if client.get_encoder().decode_responses:
        raise ConfigError(f"the {what} needs a Redis client with decode_responses=False")


def scan_prefix(client: Any, prefix: str) -> list[bytes]:
    """Every key starting with `prefix` (taken literally). On a `RedisCluster`, SCAN runs on
    every primary (redis-py sends it to all of them and follows each node's cursor), so no
    slot is missed."""
    match = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    return list(client.scan_iter(match=match, count=SCAN_COUNT))


def delete_keys(client: Any, keys: Iterable[bytes | str]) -> int:
    """DEL in chunks. A `RedisCluster` splits each chunk into one DEL per slot."""
    names = list(keys)
    deleted = 0
    for start in range(0, len(names), DELETE_CHUNK):
        deleted += int(client.delete(*names[start : start + DELETE_CHUNK]))
    return deleted


def drop_prefix(client: Any, prefix: str) -> int:
    """Delete every key starting with `prefix`: a scratch prefix cleared after use."""
    return delete_keys(client, scan_prefix(client, prefix))
