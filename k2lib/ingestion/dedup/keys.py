"""How a trade key `(exchange, symbol, session, seq)` is named, hashed and laid out in Redis.

- The name `(exchange, symbol)` hashes to 64 bits from its fixed-width wire bytes
  (`name_hashes`, shared with the sequence tracker), row by row in NumPy. A session after a
  sequence reset is mixed into it (`session_names`): the new session's seqs are other keys
  than the old one's; session 0, a symbol's first, keeps the plain name hash. Two names colliding
  among a few thousand has odds ~1e-13; if it happened, the two symbols would share one seq
  space here and could drop each other's equal seqs.
- The Bloom hash of a key is `mix64(name_hash ^ mix64(seq))`: stable across processes and
  computable from what Redis stores, so a restarted process can warm its filter.
- Redis holds the keys exactly, as bitmaps: one bit per seq in a string per
  `(window, name, seq >> BUCKET_BITS)`: in the window's hash `{prefix}g{window}`, the field
  is the name hash and the bucket as 16 little-endian bytes.
  Feeds number trades densely per symbol, so 10M keys take ~1.3 MB, against ~100 bytes a key
  as set members, and a run of consecutive seqs is one SETRANGE, not one command per record.
  Buckets are small (512 bytes at most) so that a batch can read all it touches in one MGET.
"""

from __future__ import annotations

import numpy as np

from k2lib.ingestion.sequence._runs import name_hashes
from k2lib.wire.factorize import mix64

__all__ = [
    "BUCKET_BITS",
    "bucket_of",
    "key_hash",
    "name_hashes",
    "seqs_from_bitmap",
    "session_names",
]

BUCKET_BITS = 12  # 4,096 seqs: a 512-byte string at most per bucket
_BUCKET_MASK = (1 << BUCKET_BITS) - 1
_SESSION_SALT = np.uint64(0x5E55_10A5_5E55_10A5)


def key_hash(names: np.ndarray, seqs: np.ndarray) -> np.ndarray:
    """uint64 name hashes and int64 seqs -> the uint64 Bloom hash of each key."""
    return mix64(np.asarray(names, np.uint64) ^ mix64(np.asarray(seqs).astype(np.uint64)))


def session_names(names: np.ndarray, sessions: np.ndarray) -> np.ndarray:
    """uint64 name hashes of `(exchange, symbol)` -> those of `(exchange, symbol, session)`."""
    names = np.asarray(names, np.uint64)
    sessions = np.asarray(sessions, np.int64)
    if not sessions.any():
        return names
    mixed = mix64(names ^ mix64(sessions.astype(np.uint64) ^ _SESSION_SALT))
    return np.where(sessions == 0, names, mixed)


def bucket_of(seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (bucket, bit offset within the bucket) per seq."""
    seqs = np.asarray(seqs, np.int64)
    return seqs >> BUCKET_BITS, seqs & _BUCKET_MASK


def seqs_from_bitmap(bucket: int, bitmap: bytes) -> np.ndarray:
    """The seqs whose bits are set in one bucket's bitmap (Redis bit order: MSB first)."""
    bits = np.unpackbits(np.frombuffer(bitmap, np.uint8))
    return (np.int64(bucket) << BUCKET_BITS) + np.flatnonzero(bits).astype(np.int64)
