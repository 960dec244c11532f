"""K2 wire format v1: a fixed-size little-endian binary record, decoded a batch at a time.

Layout (76 bytes)::

    0  magic     2s   b"K2"
    2  version   u1   1
    3  side      u1   0 unknown, 1 buy, 2 sell
    4  exchange  16s  ASCII, NUL-padded
    20 symbol    16s  ASCII, NUL-padded
    36 seq       i8   0 <= seq < 2**53
    44 exch_ts   i8   UTC microseconds
    52 recv_ts   i8   UTC microseconds
    60 price     i8   units of 1e-8 (exact decimal)
    68 qty       i8   units of 1e-8

Fixed width is what lets a whole poll be decoded with one `np.frombuffer`; see
docs/decisions/002-wire-format.md. A value that does not decode or validate is not an
exception: `decode_batch` returns it as a `Reject` with its reason, bound for the DLQ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from k2lib.wire.factorize import factorize
from k2lib.wire.schema import MAX_DECIMAL_INT, SCHEMA_VERSION, TradeBatch

__all__ = [
    "MAGIC",
    "MAX_SEQ",
    "MAX_TS_US",
    "MIN_TS_US",
    "RECORD_DTYPE",
    "RECORD_SIZE",
    "DecodeResult",
    "Reject",
    "decode_batch",
    "encode_batch",
]

MAGIC = b"K2"
FIELD_WIDTH = 16
RECORD_DTYPE = np.dtype(
    [
        ("magic", "S2"),
        ("version", "u1"),
        ("side", "u1"),
        ("exchange", f"S{FIELD_WIDTH}"),
        ("symbol", f"S{FIELD_WIDTH}"),
        ("seq", "<i8"),
        ("exch_ts", "<i8"),
        ("recv_ts", "<i8"),
        ("price", "<i8"),
        ("qty", "<i8"),
    ]
)
RECORD_SIZE = RECORD_DTYPE.itemsize
# Timestamps outside [2000-01-01, 2100-01-01) are a broken clock or a unit mistake.
MIN_TS_US = 946_684_800_000_000
MAX_TS_US = 4_102_444_800_000_000
# The sequence tracker keeps seqs and timestamps in Redis Lua numbers, which are doubles, and
# the dedup refuses seqs it cannot key exactly: a seq from 2**53 up would stop those stages, so
# it is rejected here, where a bad record becomes a DLQ entry. (The timestamp range above is
# well inside ±2**53 us.)
MAX_SEQ = 2**53


@dataclass(frozen=True, slots=True)
class Reject:
    """One message that will go to the DLQ: where it was in the poll, why, and its bytes."""

    index: int
    reason: str
    value: bytes


@dataclass(frozen=True, slots=True)
class DecodeResult:
    batch: TradeBatch  # the valid records, in input order
    index: np.ndarray  # position of each valid record in the input list
    rejects: list[Reject]


def encode_batch(batch: TradeBatch) -> list[bytes]:
    """One wire value per row (TradeBatch already holds names as fixed-width ASCII)."""
    n = len(batch)
    rec = np.zeros(n, dtype=RECORD_DTYPE)
    rec["magic"] = MAGIC
    rec["version"] = SCHEMA_VERSION
    rec["side"] = batch.side
    rec["exchange"] = batch.exchange
    rec["symbol"] = batch.symbol
    rec["seq"] = batch.seq
    rec["exch_ts"] = batch.exch_ts
    rec["recv_ts"] = batch.recv_ts
    rec["price"] = batch.price
    rec["qty"] = batch.qty
    buf = rec.tobytes()
    return [buf[i : i + RECORD_SIZE] for i in range(0, len(buf), RECORD_SIZE)]


def decode_batch(values: Sequence[bytes | None]) -> DecodeResult:
    """Decode and validate a poll's values with column operations."""
    n = len(values)
    try:
        lengths = np.fromiter(map(len, values), np.int64, n)  # type: ignore[arg-type]
    except TypeError:  # a None value (tombstone) somewhere: the slow, careful way
        lengths = np.fromiter((len(v) if v is not None else -1 for v in values), np.int64, n)
    sized = lengths == RECORD_SIZE
    rejects: list[Reject] = [
        Reject(i, _length_reason(int(lengths[i])), values[i] or b"")
        for i in np.flatnonzero(~sized).tolist()
    ]
    sized_idx = np.flatnonzero(sized)
    # Only values of the right length reach here, so none of them is None.
    picked = values if sized_idx.size == n else [values[i] for i in sized_idx.tolist()]
    buf = b"".join(picked)  # type: ignore[arg-type]
    rec = np.frombuffer(buf, dtype=RECORD_DTYPE)
    bad, reasons = _validate(rec)
    for j, reason in zip(np.flatnonzero(bad).tolist(), reasons, strict=True):
        i = int(sized_idx[j])
        rejects.append(Reject(i, reason, values[i] or b""))
    good = rec[~bad]
    batch = TradeBatch.from_columns(
        exchange=good["exchange"],
        symbol=good["symbol"],
        seq=good["seq"],
        exch_ts=good["exch_ts"],
        recv_ts=good["recv_ts"],
        price=good["price"],
        qty=good["qty"],
        side=good["side"],
    )
    rejects.sort(key=lambda r: r.index)
    return DecodeResult(batch=batch, index=sized_idx[~bad], rejects=rejects)


def _validate(rec: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """-> (bad mask, the reason of each bad row in order). The first failing rule, in the
    order below read from the bottom up, is the reason; reasons are built for bad rows only."""
    rules = [
        (rec["qty"] > MAX_DECIMAL_INT, "qty out of range for decimal(18,8)"),
        (rec["price"] > MAX_DECIMAL_INT, "price out of range for decimal(18,8)"),
        (rec["qty"] <= 0, "qty must be > 0"),
        (rec["price"] <= 0, "price must be > 0"),
        ((rec["recv_ts"] < MIN_TS_US) | (rec["recv_ts"] >= MAX_TS_US), "recv_ts out of range"),
        ((rec["exch_ts"] < MIN_TS_US) | (rec["exch_ts"] >= MAX_TS_US), "exch_ts out of range"),
        (rec["seq"] >= MAX_SEQ, "seq must be < 2**53"),
        (rec["seq"] < 0, "seq must be >= 0"),
        (rec["side"] > 2, "side must be 0, 1 or 2"),
        (~_is_name(rec["symbol"]), "symbol must be non-empty printable ASCII"),
        (~_is_name(rec["exchange"]), "exchange must be non-empty printable ASCII"),
        (rec["version"] != SCHEMA_VERSION, "unsupported schema version"),
        (rec["magic"] != MAGIC, "bad magic (not a K2 record)"),
    ]
    bad = np.zeros(rec.shape[0], bool)
    for mask, _ in rules:
        bad |= mask
    if not bad.any():
        return bad, []
    reasons = np.full(rec.shape[0], "", dtype=object)
    for mask, reason in rules:
        reasons[mask] = reason
    return bad, [str(r) for r in reasons[bad]]


def _is_name(field: np.ndarray) -> np.ndarray:
    # A poll holds few distinct names: check each distinct value once.
    codes, uniq = factorize(field)
    return _names_ok(uniq)[codes]


def _names_ok(field: np.ndarray) -> np.ndarray:
    raw = np.ascontiguousarray(field).view(np.uint8).reshape(-1, FIELD_WIDTH)
    present = raw != 0
    # NUL padding only at the end: once a NUL appears, every later byte is NUL.
    contiguous = np.all(present[:, :-1] | ~present[:, 1:], axis=1)
    printable = np.all(~present | ((raw >= 0x21) & (raw <= 0x7E)), axis=1)
    return present[:, 0] & contiguous & printable


def _length_reason(length: int) -> str:
    if length < 0:
        return "empty message (no value)"
    return f"wrong length {length} bytes (a v{SCHEMA_VERSION} record is {RECORD_SIZE})"
