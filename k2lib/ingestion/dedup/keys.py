"""How a trade key `(exchange, symbol, seq)` is named, hashed and laid out in Redis.

- The name `exchange:symbol` hashes to 64 bits (blake2b), once per distinct name. Two names
  colliding among a few thousand has odds ~1e-13; if it happened, the two symbols would share
  one seq space in the dedup tier and could drop each other's equal seqs.
- The Bloom hash of a key is `mix64(name_hash ^ mix64(seq))`: stable across processes and
  computable from what Redis stores, so a restarted process can warm its filter.
- Redis holds the keys exactly, as bitmaps: one bit per seq in a string per
  `(window, name, seq >> BUCKET_BITS)`, named `{prefix}g{window}:{name hash hex}:{bucket}`.
  Feeds number trades densely per symbol, so 10M keys take ~1.3 MB, against ~100 bytes a key
  as set members. A run of consecutive seqs is one SETRANGE, not one command per record.
"""

from __future__ import annotations

import hashlib

import numpy as np

from k2lib.wire.factorize import mix64

__all__ = [
    "BUCKET_BITS",
    "NameTable",
    "bucket_of",
    "key_hash",
    "name_hash",
    "seqs_from_bitmap",
]

BUCKET_BITS = 16  # 65,536 seqs, an 8 KiB string at most per bucket
_BUCKET_MASK = (1 << BUCKET_BITS) - 1
MAX_CACHED_NAMES = 100_000


def name_hash(exchange: str, symbol: str) -> int:
    digest = hashlib.blake2b(f"{exchange}:{symbol}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def key_hash(names: np.ndarray, seqs: np.ndarray) -> np.ndarray:
    """uint64 name hashes and int64 seqs -> the uint64 Bloom hash of each key."""
    return mix64(np.asarray(names, np.uint64) ^ mix64(np.asarray(seqs).astype(np.uint64)))


def seqs_from_bitmap(bucket: int, bitmap: bytes) -> np.ndarray:
    """The seqs whose bits are set in one bucket's bitmap (Redis bit order: MSB first)."""
    bits = np.unpackbits(np.frombuffer(bitmap, np.uint8))
    return (np.int64(bucket) << BUCKET_BITS) + np.flatnonzero(bits).astype(np.int64)


class NameTable:
    """Name hashes per `(exchange, symbol)`, computed once and kept."""

    def __init__(self) -> None:
        self._hashes: dict[tuple[str, str], int] = {}

    def hashes(self, keys: list[tuple[str, str]]) -> np.ndarray:
        cache = self._hashes
        if len(cache) > MAX_CACHED_NAMES:
            cache.clear()
        out = np.empty(len(keys), np.uint64)
        for i, key in enumerate(keys):
            h = cache.get(key)
            if h is None:
                h = cache[key] = name_hash(*key)
            out[i] = h
        return out


def bucket_of(seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (bucket, bit offset within the bucket) per seq."""
    seqs = np.asarray(seqs, np.int64)
    return seqs >> BUCKET_BITS, seqs & _BUCKET_MASK
