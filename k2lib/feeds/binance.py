"""Replay of recorded Binance websocket captures (see ../shared/data/README.md).

Each line is `<local_receive_ns> <json>`; only `<sym>@trade` streams are trades. The venue
comes from the `exchange` argument or the file name: `spot_*` is `binance`, `usdm_*` is
`binance-usdm` (the same symbol on two venues is two keys). `seq` is the trade id `t`.

A trade line that does not parse (bad JSON, a missing field, a field of the wrong type or out
of range) is skipped, counted and reported with its file and line number; the replay goes on.
A line is parsed whole before any column takes its values, so the columns stay aligned.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from k2lib.errors import SourceError, ValidationError
from k2lib.feeds.base import DEFAULT_CHUNK, SourceReport, checked_int64, checked_name, shown
from k2lib.wire.schema import TradeBatch, parse_decimal

__all__ = ["BinanceCapture", "venue_of"]

VENUES = {"spot": "binance", "usdm": "binance-usdm", "coinm": "binance-coinm"}
TRADE_MARK = '@trade"'
_T = TypeVar("_T")
MAX_RECV_DIGITS = 40  # ns fit in 19; int() itself refuses past 4,300 with an unclear message
COLUMNS = ("exchange", "symbol", "seq", "exch_ts", "recv_ts", "price", "qty", "side")


def venue_of(path: Path) -> str:
    prefix = path.name.split("_", 1)[0].lower()
    if prefix not in VENUES:
        raise SourceError(
            f"cannot tell the venue of {path.name}: name it spot_*/usdm_* or pass --exchange"
        )
    return VENUES[prefix]


class BinanceCapture:
    """Trades from one capture file, or every `*.gz` capture in a folder (name order)."""

    def __init__(self, path: Path, *, exchange: str | None = None, limit: int | None = None):
        self.path = path
        self.files = sorted(path.glob("*.gz")) if path.is_dir() else [path]
        if not self.files:
            raise SourceError(f"no .gz captures in {path}")
        self.exchange = None if exchange is None else _venue_name(exchange)
        self.limit = limit
        self.name = f"binance:{path.name}"
        self.report = SourceReport()

    def batches(self, chunk: int = DEFAULT_CHUNK) -> Iterator[TradeBatch]:
        rows: dict[str, list] = _empty()
        for path in self.files:
            venue = self.exchange or venue_of(path)
            for lineno, line in _lines(path):
                if TRADE_MARK not in line:
                    continue  # depth and bookTicker streams share the file
                if self.limit is not None and self.report.records >= self.limit:
                    break
                try:
                    row = _parse(venue, line)
                except (ValueError, KeyError, TypeError, ValidationError) as exc:
                    self.report.reject(f"{path.name}:{lineno}", str(exc) or type(exc).__name__)
                    continue
                for column, value in zip(COLUMNS, row, strict=True):
                    rows[column].append(value)
                self.report.records += 1
                if len(rows["seq"]) >= chunk:
                    yield TradeBatch.from_columns(**rows)
                    rows = _empty()
        if rows["seq"]:
            yield TradeBatch.from_columns(**rows)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            yield from enumerate(fh, start=1)
    except (OSError, EOFError, zlib.error) as exc:  # a corrupt gzip: a clear error
        raise SourceError(f"{path.name}: unreadable capture ({exc})") from exc


def _empty() -> dict[str, list]:
    return {k: [] for k in COLUMNS}


def _venue_name(name: str) -> str:
    try:
        return checked_name(name, "exchange")
    except ValidationError as exc:
        raise SourceError(str(exc)) from None


def _parse(venue: str, line: str) -> tuple[str, str, int, int, int, int, int, int]:
    """One trade line -> its values in COLUMNS order. Raises ValueError or ValidationError."""
    recv_ns, _, payload = line.partition(" ")
    if not recv_ns.isascii() or not recv_ns.isdigit() or len(recv_ns) > MAX_RECV_DIGITS:
        raise ValidationError(f"receive time must be integer ns, got {shown(recv_ns)}")
    try:
        msg = json.loads(payload)
    except RecursionError:  # nesting deeper than the parser's stack
        raise ValidationError("JSON nested too deeply") from None
    data = msg.get("data") if isinstance(msg, dict) else None
    if not isinstance(data, dict):
        raise ValidationError("no data object")
    if data.get("e") != "trade":
        raise ValidationError("not a trade event")
    symbol = checked_name(_field(data, "s", str), "symbol")
    seq = checked_int64(_field(data, "t", int), "trade id t")
    exch_ts = checked_int64(_field(data, "T", int) * 1000, "trade time T in us")
    recv_ts = checked_int64(int(recv_ns) // 1000, "receive time in us")
    price = parse_decimal(_field(data, "p", str))
    qty = parse_decimal(_field(data, "q", str))
    # m: buyer is maker, so the aggressor sold
    side = 2 if _field(data, "m", bool) else 1
    return venue, symbol, seq, exch_ts, recv_ts, price, qty, side


def _field(data: dict[str, Any], key: str, kind: type[_T]) -> _T:
    value = data.get(key)
    # bool is an int in Python, and true is no trade id
    if value is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        what = "missing" if key not in data else f"must be {kind.__name__}, got {shown(value)}"
        raise ValidationError(f"field {key} {what}")
    return value
