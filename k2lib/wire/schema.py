"""The trade record, as columns. One schema for the wire, for Arrow and for Iceberg.

A record is `exchange, symbol, seq, exch_ts, recv_ts, price, qty, side`:

- `exch_ts` and `recv_ts` are UTC microseconds since the epoch (int64);
- `price` and `qty` are exact decimals held as int64 counts of 1e-8 (`SCALE`), so a feed's
  decimal string reaches Iceberg's `decimal(18, 8)` with no float in between;
- `side` is 0 unknown, 1 buy, 2 sell (the aggressor);
- `session` says which of a symbol's sequence sessions the seq belongs to: 0 for the first,
  then the `exch_ts` of the record that began each later one. It never travels on the wire:
  the sequence tracker assigns it at ingest when it sees a reset
  (`k2lib.ingestion.sequence`), and a trade is `(exchange, symbol, session, seq)`. A record
  deferred before the tracker saw it (Redis was down) waits in the spill as `UNNAMED_SESSION`.

`TradeBatch` carries a batch as NumPy columns; the hot paths never build per-record objects.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from k2lib.errors import ValidationError
from k2lib.wire.factorize import factorize, factorize_pair

__all__ = [
    "ARROW_SCHEMA",
    "DECIMAL_PLACES",
    "SCALE",
    "SCHEMA_VERSION",
    "SIDE_NAMES",
    "UNNAMED_SESSION",
    "Trade",
    "TradeBatch",
    "conform",
    "format_decimal",
    "parse_decimal",
]

SCHEMA_VERSION = 1
UNNAMED_SESSION = -1
DECIMAL_PLACES = 8
SCALE = 10**DECIMAL_PLACES
MAX_DECIMAL_INT = 10**18 - 1  # decimal(18, 8) holds 18 digits
SIDE_NAMES = ("", "buy", "sell")
NAME_WIDTH = 16
NAME_DTYPE = np.dtype(f"S{NAME_WIDTH}")
_SIDE_CODES = {"": 0, "buy": 1, "sell": 2, "b": 1, "s": 2}

TS_TYPE = pa.timestamp("us", tz="UTC")
DECIMAL_TYPE = pa.decimal128(18, DECIMAL_PLACES)

ARROW_SCHEMA = pa.schema(
    [
        pa.field("exchange", pa.large_string(), nullable=False),
        pa.field("symbol", pa.large_string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("exch_ts", TS_TYPE, nullable=False),
        pa.field("recv_ts", TS_TYPE, nullable=False),
        pa.field("price", DECIMAL_TYPE, nullable=False),
        pa.field("qty", DECIMAL_TYPE, nullable=False),
        pa.field("side", pa.large_string(), nullable=True),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
        pa.field("session", pa.int64(), nullable=True),  # null in rows written before it
    ]
)


def parse_decimal(text: str) -> int:
    """`"60512.0100"` -> 6051201000000: exact, no float. Raises ValidationError."""
    if not isinstance(text, str):  # a JSON number would already have gone through a float
        raise ValidationError(f"decimal must be a string, got {type(text).__name__}")
    s = text.strip()
    neg = s.startswith("-")
    if neg or s.startswith("+"):
        s = s[1:]
    whole, _, frac = s.partition(".")
    if not whole and not frac:
        raise ValidationError(f"not a decimal: {text!r}")
    if not (whole or "0").isdigit() or (frac and not frac.isdigit()):
        raise ValidationError(f"not a decimal: {text!r}")
    if len(frac) > DECIMAL_PLACES:
        if frac[DECIMAL_PLACES:].strip("0"):
            raise ValidationError(f"more than {DECIMAL_PLACES} decimal places: {text!r}")
        frac = frac[:DECIMAL_PLACES]
    value = int(whole or "0") * SCALE + int(frac.ljust(DECIMAL_PLACES, "0") or "0")
    if value > MAX_DECIMAL_INT:
        raise ValidationError(f"decimal out of range for decimal(18,8): {text!r}")
    return -value if neg else value


def format_decimal(units: int) -> str:
    """6051201000000 -> `"60512.01000000"` (the inverse of parse_decimal)."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(int(units)), SCALE)
    return f"{sign}{whole}.{frac:0{DECIMAL_PLACES}d}"


def side_code(side: str | None) -> int:
    code = _SIDE_CODES.get((side or "").strip().lower())
    if code is None:
        raise ValidationError(f"side must be buy, sell or empty, got {side!r}")
    return code


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade, for people and tests. Pipelines use TradeBatch."""

    exchange: str
    symbol: str
    seq: int
    exch_ts: int
    recv_ts: int
    price: Decimal
    qty: Decimal
    side: str = ""

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.exchange, self.symbol, self.seq)


@dataclass(frozen=True, slots=True)
class TradeBatch:
    """A batch of trades as aligned NumPy columns (see the module docstring for units).

    `exchange` and `symbol` are ASCII byte strings (`S16`), as on the wire: decoding them
    to Python `str` per row would cost more than the rest of the pipeline.
    """

    exchange: np.ndarray
    symbol: np.ndarray
    seq: np.ndarray
    exch_ts: np.ndarray
    recv_ts: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    side: np.ndarray
    partition: np.ndarray
    offset: np.ndarray
    session: np.ndarray

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    @classmethod
    def from_columns(
        cls,
        *,
        exchange: Sequence[str] | np.ndarray,
        symbol: Sequence[str] | np.ndarray,
        seq: Sequence[int] | np.ndarray,
        exch_ts: Sequence[int] | np.ndarray,
        recv_ts: Sequence[int] | np.ndarray,
        price: Sequence[int] | np.ndarray,
        qty: Sequence[int] | np.ndarray,
        side: Sequence[int] | np.ndarray | None = None,
        partition: Sequence[int] | np.ndarray | None = None,
        offset: Sequence[int] | np.ndarray | None = None,
        session: Sequence[int] | np.ndarray | None = None,
    ) -> TradeBatch:
        n = len(seq)
        return cls(
            exchange=_names(exchange),
            symbol=_names(symbol),
            seq=np.asarray(seq, dtype=np.int64),
            exch_ts=np.asarray(exch_ts, dtype=np.int64),
            recv_ts=np.asarray(recv_ts, dtype=np.int64),
            price=np.asarray(price, dtype=np.int64),
            qty=np.asarray(qty, dtype=np.int64),
            side=np.zeros(n, np.int8) if side is None else np.asarray(side, dtype=np.int8),
            partition=np.full(n, -1, np.int32)
            if partition is None
            else np.asarray(partition, dtype=np.int32),
            offset=np.full(n, -1, np.int64) if offset is None else np.asarray(offset, np.int64),
            session=np.zeros(n, np.int64) if session is None else np.asarray(session, np.int64),
        )

    @classmethod
    def empty(cls) -> TradeBatch:
        return cls.from_columns(
            exchange=[], symbol=[], seq=[], exch_ts=[], recv_ts=[], price=[], qty=[]
        )

    @classmethod
    def from_trades(cls, trades: Sequence[Trade]) -> TradeBatch:
        return cls.from_columns(
            exchange=[t.exchange for t in trades],
            symbol=[t.symbol for t in trades],
            seq=[t.seq for t in trades],
            exch_ts=[t.exch_ts for t in trades],
            recv_ts=[t.recv_ts for t in trades],
            price=[parse_decimal(str(t.price)) for t in trades],
            qty=[parse_decimal(str(t.qty)) for t in trades],
            side=[side_code(t.side) for t in trades],
        )

    @classmethod
    def concat(cls, batches: Sequence[TradeBatch]) -> TradeBatch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(
            **{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(cls)}
        )

    def take(self, index: np.ndarray) -> TradeBatch:
        """Rows by boolean mask or integer index, in that order."""
        return TradeBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def with_kafka(self, partition: np.ndarray, offset: np.ndarray) -> TradeBatch:
        return TradeBatch(
            **{
                **{f.name: getattr(self, f.name) for f in fields(self)},
                "partition": np.asarray(partition, np.int32),
                "offset": np.asarray(offset, np.int64),
            }
        )

    def with_session(self, session: np.ndarray) -> TradeBatch:
        """The same rows in the sessions the sequence tracker assigned them."""
        return TradeBatch(
            **{
                **{f.name: getattr(self, f.name) for f in fields(self)},
                "session": np.asarray(session, np.int64),
            }
        )

    def key_codes(self) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """-> (int32 code per row, the distinct `(exchange, symbol)` pairs the codes index)."""
        codes, ex, sym = factorize_pair(self.exchange, self.symbol)
        return codes, [(e.decode(), s.decode()) for e, s in zip(ex, sym, strict=True)]

    def kafka_keys(self) -> list[bytes]:
        """`exchange:symbol` per row, the Kafka message key."""
        codes, pairs = self.key_codes()
        table = [f"{e}:{s}".encode() for e, s in pairs]
        return [table[c] for c in codes.tolist()]

    def trades(self) -> Iterator[Trade]:
        for i in range(len(self)):
            yield Trade(
                exchange=self.exchange[i].decode(),
                symbol=self.symbol[i].decode(),
                seq=int(self.seq[i]),
                exch_ts=int(self.exch_ts[i]),
                recv_ts=int(self.recv_ts[i]),
                price=Decimal(format_decimal(int(self.price[i]))),
                qty=Decimal(format_decimal(int(self.qty[i]))),
                side=SIDE_NAMES[int(self.side[i])],
            )

    # -- Arrow -------------------------------------------------------------------------

    def to_arrow(self) -> pa.Table:
        """The Iceberg-ready Arrow table (exact decimals, UTC microsecond timestamps)."""
        n = len(self)
        return pa.Table.from_arrays(
            [
                _strings(self.exchange),
                _strings(self.symbol),
                pa.array(self.seq, pa.int64()),
                pa.array(self.exch_ts, pa.int64()).cast(TS_TYPE),
                pa.array(self.recv_ts, pa.int64()).cast(TS_TYPE),
                _decimals(self.price, n),
                _decimals(self.qty, n),
                _sides(self.side),
                pa.array(self.partition, pa.int32()),
                pa.array(self.offset, pa.int64()),
                pa.array(self.session, pa.int64()),
            ],
            schema=ARROW_SCHEMA,
        )

    @classmethod
    def from_arrow(cls, table: pa.Table) -> TradeBatch:
        """Inverse of to_arrow (Kafka columns default to -1 where absent, session to 0)."""
        n = table.num_rows
        cols: dict[str, Any] = {}
        for name in ("exchange", "symbol"):
            cols[name] = _names(table.column(name).to_numpy(zero_copy_only=False))
        cols["seq"] = table.column("seq").to_numpy()
        for name in ("exch_ts", "recv_ts"):
            cols[name] = table.column(name).cast(TS_TYPE).cast(pa.int64()).to_numpy()
        for name in ("price", "qty"):
            cols[name] = decimal_units(table.column(name))
        side = table.column("side").to_pylist() if "side" in table.column_names else [""] * n
        cols["side"] = np.array([_SIDE_CODES.get(s or "", 0) for s in side], np.int8)
        for name, key in (("partition", "kafka_partition"), ("offset", "kafka_offset")):
            cols[name] = table.column(key).to_numpy() if key in table.column_names else None
        if "session" in table.column_names:
            cols["session"] = table.column("session").fill_null(0).to_numpy()
        return cls.from_columns(**cols)


def conform(rows: pa.Table) -> pa.Table:
    """Rows of ARROW_SCHEMA's columns in its types (any string widths, any UTC zone spelling):
    a column missing from rows written before it existed (`session`) comes back null."""
    columns = [
        rows.column(f.name).cast(f.type)
        if f.name in rows.column_names
        else pa.nulls(rows.num_rows, f.type)
        for f in ARROW_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)


def decimal_units(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A decimal128(18, 8) column -> its exact int64 units of 1e-8 (reads the raw words)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    arr = arr.cast(DECIMAL_TYPE)
    buf = arr.buffers()[1]
    words = np.frombuffer(buf, dtype=np.int64)[2 * arr.offset : 2 * (arr.offset + len(arr))]
    return words[0::2].copy()


def _decimals(units: np.ndarray, n: int) -> pa.Array:
    words = np.empty((n, 2), dtype=np.int64)
    words[:, 0] = units
    words[:, 1] = units >> 63  # sign extension into the high word
    return pa.Array.from_buffers(DECIMAL_TYPE, n, [None, pa.py_buffer(words)])


def _names(values: Sequence[str] | Sequence[bytes] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        return arr.astype(NAME_DTYPE)
    if arr.size == 0:
        return np.zeros(0, NAME_DTYPE)
    # Encode each distinct name once: a few hundred names, not a million rows.
    uniq, inverse = np.unique(arr.astype(np.str_), return_inverse=True)
    try:
        encoded = np.array([u.encode("ascii") for u in uniq.tolist()], dtype=NAME_DTYPE)
    except UnicodeEncodeError as exc:
        raise ValidationError(f"names must be ASCII: {exc}") from exc
    if any(len(u) > NAME_WIDTH for u in uniq.tolist()):
        raise ValidationError(f"names must be at most {NAME_WIDTH} bytes: {uniq.tolist()}")
    return encoded[inverse.reshape(-1)]


def _strings(values: np.ndarray) -> pa.Array:
    # Few distinct names per batch: build Python strings once per distinct value.
    codes, uniq = factorize(values)
    dictionary = pa.array([u.decode() for u in uniq.tolist()], pa.large_string())
    return pa.DictionaryArray.from_arrays(pa.array(codes), dictionary).cast(pa.large_string())


def _sides(codes: np.ndarray) -> pa.Array:
    dictionary = pa.array([None, "buy", "sell"], pa.large_string())
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), dictionary).cast(
        pa.large_string()
    )


def utc_micros(dt: datetime) -> int:
    """An aware datetime -> UTC microseconds. Naive datetimes are rejected."""
    if dt.tzinfo is None:
        raise ValidationError(f"timestamp {dt.isoformat()} has no UTC offset")
    delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
