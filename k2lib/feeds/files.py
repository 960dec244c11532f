"""CSV and Parquet trade files with columns `exchange,symbol,seq,ts,price,qty[,side]`.

`ts` is ISO-8601 with an offset or integer epoch nanoseconds; `side` may be empty. A
malformed row (including a seq or ts too large for int64) is counted and reported with its
line number; it does not stop the file. A Parquet decimal column is read exactly: a value is
written out in fixed point (`0.00000012`, never `1.2E-7`) before it is parsed.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from k2lib.errors import SourceError, ValidationError
from k2lib.feeds.base import DEFAULT_CHUNK, SourceReport, checked_int64, checked_name, shown
from k2lib.wire.schema import TradeBatch, parse_decimal, side_code, utc_micros

__all__ = ["REQUIRED_COLUMNS", "TradeFile", "decimal_text", "parse_ts"]

REQUIRED_COLUMNS = ("exchange", "symbol", "seq", "ts", "price", "qty")
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
# More digits than any int64 (19) by a margin: refused before int(), whose own refusal past
# 4,300 digits says nothing about the row.
_MAX_DIGITS = 40


def parse_ts(raw: Any) -> int:
    """ISO-8601 with an offset, or integer epoch nanoseconds -> UTC microseconds.

    Raises ValidationError, also for a time whose microseconds do not fit in int64."""
    if isinstance(raw, int):
        return checked_int64(raw // 1000, "ts")
    text = str(raw).strip()
    if _INTEGER.fullmatch(text):
        return checked_int64(_integer(text, "ts") // 1000, "ts")
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"ts {shown(text)} is neither ISO-8601 nor epoch ns") from exc
    return utc_micros(dt)


def decimal_text(raw: Any) -> str:
    """A price or qty cell as a decimal string for parse_decimal, never in exponent form.

    A Parquet decimal arrives as a Decimal, whose str() is `1.2E-7` below 1e-6; fixed-point
    formatting keeps every digit. A float is taken as its shortest repr, as str() does."""
    if isinstance(raw, float):
        raw = Decimal(repr(raw))
    if isinstance(raw, Decimal):
        return format(raw, "f")
    return str(raw)


class TradeFile:
    """One CSV or Parquet file of trades."""

    def __init__(self, path: Path, *, limit: int | None = None) -> None:
        self.path = path
        self.limit = limit
        self.name = f"file:{path.name}"
        self.report = SourceReport()

    def _rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if self.path.suffix.lower() == ".csv":
            try:
                with open(self.path, newline="", encoding="utf-8", errors="replace") as fh:
                    reader = csv.DictReader(fh)
                    _check_columns(reader.fieldnames or [], self.path)
                    yield from enumerate(reader, start=2)
            except csv.Error as exc:
                raise SourceError(f"{self.path.name}: not a readable CSV ({exc})") from exc
            return
        try:
            pf = pq.ParquetFile(self.path)
        except Exception as exc:
            raise SourceError(f"{self.path.name}: not a readable Parquet file ({exc})") from exc
        _check_columns(pf.schema_arrow.names, self.path)
        line = 0
        for rb in pf.iter_batches(batch_size=DEFAULT_CHUNK):
            for row in rb.to_pylist():
                line += 1
                yield line, row

    def batches(self, chunk: int = DEFAULT_CHUNK) -> Iterator[TradeBatch]:
        cols: dict[str, list] = {
            k: []
            for k in ("exchange", "symbol", "seq", "exch_ts", "recv_ts", "price", "qty", "side")
        }
        for line, row in self._rows():
            if self.limit is not None and self.report.records >= self.limit:
                break
            try:
                parsed = _parse_row(row)
            except (ValidationError, ValueError, TypeError, KeyError) as exc:
                self.report.reject(f"{self.path.name}:{line}", str(exc))
                continue
            for key, value in parsed.items():
                cols[key].append(value)
            self.report.records += 1
            if len(cols["seq"]) >= chunk:
                yield TradeBatch.from_columns(**cols)
                cols = {k: [] for k in cols}
        if cols["seq"]:
            yield TradeBatch.from_columns(**cols)


def _check_columns(names: Sequence[str], path: Path) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise SourceError(f"{path.name}: missing columns {missing}; need {list(REQUIRED_COLUMNS)}")


def _integer(text: str, what: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValidationError(f"{what} must be an integer, got {shown(text)}")
    if len(text.lstrip("+-")) > _MAX_DIGITS:
        raise ValidationError(f"{what} {shown(text)} is outside the int64 range")
    return int(text)


def _parse_row(row: dict[str, Any]) -> dict[str, Any]:
    exchange = checked_name(str(row["exchange"] or "").strip(), "exchange")
    symbol = checked_name(str(row["symbol"] or "").strip(), "symbol")
    seq = checked_int64(_integer(str(row["seq"]).strip(), "seq"), "seq")
    if seq < 0:
        raise ValidationError(f"seq must be >= 0, got {seq}")
    ts = parse_ts(row["ts"])
    price = parse_decimal(decimal_text(row["price"]))
    qty = parse_decimal(decimal_text(row["qty"]))
    if price <= 0 or qty <= 0:
        raise ValidationError("price and qty must be > 0")
    side = side_code(row.get("side"))
    return {
        "exchange": exchange,
        "symbol": symbol,
        "seq": seq,
        "exch_ts": ts,
        "recv_ts": ts,
        "price": price,
        "qty": qty,
        "side": side,
    }
