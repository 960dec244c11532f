"""Replay of recorded Binance websocket captures (see ../shared/data/README.md).

Each line is `<local_receive_ns> <json>`; only `<sym>@trade` streams are trades. The venue
comes from the `exchange` argument or the file name: `spot_*` is `binance`, `usdm_*` is
`binance-usdm` (the same symbol on two venues is two keys). `seq` is the trade id `t`.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

from k2lib.errors import SourceError, ValidationError
from k2lib.feeds.base import DEFAULT_CHUNK, SourceReport
from k2lib.wire.schema import TradeBatch, parse_decimal

__all__ = ["BinanceCapture", "venue_of"]

VENUES = {"spot": "binance", "usdm": "binance-usdm", "coinm": "binance-coinm"}
TRADE_MARK = '@trade"'


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
        self.exchange = exchange
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
                    _append(rows, venue, line)
                except (ValueError, KeyError, TypeError, ValidationError) as exc:
                    self.report.reject(f"{path.name}:{lineno}", str(exc) or type(exc).__name__)
                    continue
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
    return {
        k: [] for k in ("exchange", "symbol", "seq", "exch_ts", "recv_ts", "price", "qty", "side")
    }


def _append(rows: dict[str, list], venue: str, line: str) -> None:
    recv_ns, _, payload = line.partition(" ")
    msg = json.loads(payload)
    data = msg["data"]
    if data.get("e") != "trade":
        raise ValueError("not a trade event")
    rows["exchange"].append(venue)
    rows["symbol"].append(str(data["s"]))
    rows["seq"].append(int(data["t"]))
    rows["exch_ts"].append(int(data["T"]) * 1000)
    rows["recv_ts"].append(int(recv_ns) // 1000)
    rows["price"].append(parse_decimal(data["p"]))
    rows["qty"].append(parse_decimal(data["q"]))
    # m: buyer is maker, so the aggressor sold
    rows["side"].append(2 if data["m"] else 1)
