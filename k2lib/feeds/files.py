"""CSV and Parquet trade files with columns `exchange,symbol,seq,ts,price,qty[,side]`.

`ts` is ISO-8601 with an offset or integer epoch nanoseconds; `side` may be empty. A
malformed row is counted and reported with its line number; it does not stop the file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from k2lib.errors import SourceError, ValidationError
from k2lib.feeds.base import DEFAULT_CHUNK, SourceReport
from k2lib.wire.schema import TradeBatch, parse_decimal, side_code, utc_micros

__all__ = ["REQUIRED_COLUMNS", "TradeFile", "parse_ts"]

REQUIRED_COLUMNS = ("exchange", "symbol", "seq", "ts", "price", "qty")


def parse_ts(raw: Any) -> int:
    """ISO-8601 with an offset, or integer epoch nanoseconds -> UTC microseconds."""
    if isinstance(raw, int):
        return raw // 1000
    text = str(raw).strip()
    if text.lstrip("-").isdigit():
        return int(text) // 1000
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"ts {text!r} is neither ISO-8601 nor epoch ns") from exc
    return utc_micros(dt)


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


def _parse_row(row: dict[str, Any]) -> dict[str, Any]:
    exchange = str(row["exchange"] or "").strip()
    symbol = str(row["symbol"] or "").strip()
    if not exchange or not symbol:
        raise ValidationError("exchange and symbol must be non-empty")
    if not (exchange.isascii() and symbol.isascii()) or len(exchange) > 16 or len(symbol) > 16:
        raise ValidationError("exchange and symbol must be ASCII, at most 16 characters")
    seq = int(str(row["seq"]).strip())
    if seq < 0:
        raise ValidationError(f"seq must be >= 0, got {seq}")
    ts = parse_ts(row["ts"])
    price = parse_decimal(str(row["price"]))
    qty = parse_decimal(str(row["qty"]))
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
