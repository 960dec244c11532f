"""Fast, exact factorisation of fixed-width byte columns (exchange, symbol).

`np.unique` on byte strings sorts them, which costs more than the whole decode. A batch
holds few distinct names, so we hash each 16-byte value to a uint64, factorise the hashes,
then verify every row against its representative. A hash collision (never seen, but
possible) falls back to the exact sort.
"""

from __future__ import annotations

import numpy as np

__all__ = ["factorize", "factorize_pair"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def _words(values: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(values)
    width = flat.dtype.itemsize
    if width % 8:
        flat = flat.astype(f"S{(width // 8 + 1) * 8}")
    if len(values) == 0:
        return np.zeros((0, max(width // 8, 1)), np.uint64)
    return flat.view(np.uint64).reshape(len(values), -1)


def _hash_rows(words: np.ndarray) -> np.ndarray:
    h = np.zeros(words.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            h = mix64(h ^ words[:, j])
    return h


def _factorize_words(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (codes per row, index of one representative row per code)."""
    if words.shape[0] == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int64)
    h = _hash_rows(words)
    _, first, codes = np.unique(h, return_index=True, return_inverse=True)
    if np.array_equal(words[first][codes], words):
        return codes.astype(np.int32), first
    rows = np.ascontiguousarray(words).view(np.dtype((np.void, words.shape[1] * 8))).ravel()
    _, first, codes = np.unique(rows, return_index=True, return_inverse=True)
    return codes.astype(np.int32), first


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fixed-width bytes array -> (int32 codes, unique values), exact."""
    codes, first = _factorize_words(_words(values))
    return codes, values[first]


def factorize_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two aligned byte columns -> (codes, unique a, unique b) over the (a, b) pairs."""
    words = np.hstack([_words(a), _words(b)])
    codes, first = _factorize_words(words)
    return codes, a[first], b[first]
