"""`open_source`: a feed source picked by its name, as pyiceberg's `load_catalog` picks a
catalog. The sources themselves sit beside it and know nothing of this module."""

from __future__ import annotations

from pathlib import Path

from k2lib.errors import SourceError
from k2lib.feeds.base import FeedSource
from k2lib.feeds.binance import BinanceCapture
from k2lib.feeds.files import TradeFile
from k2lib.feeds.synthetic import SyntheticConfig, SyntheticFeed

__all__ = ["open_source"]


def open_source(
    spec: str,
    *,
    limit: int | None = None,
    exchange: str | None = None,
    seed: int = 7,
    symbols: int | None = None,
) -> FeedSource:
    """`synthetic`, a Binance capture (`.gz`) or a folder of them, or a `.csv`/`.parquet` file."""
    if spec == "synthetic" or spec.startswith("synthetic:"):
        config = SyntheticConfig(seed=seed, records=limit or SyntheticConfig().records)
        if symbols:
            config = SyntheticConfig(seed=seed, records=config.records, symbols=symbols)
        return SyntheticFeed(config)
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"no such source: {spec!r} (give 'synthetic' or an existing path)")
    if path.is_dir() or path.name.endswith((".gz", ".jsonl", ".txt")):
        return BinanceCapture(path, exchange=exchange, limit=limit)
    if path.suffix.lower() in (".csv", ".parquet", ".pq"):
        return TradeFile(path, limit=limit)
    raise SourceError(
        f"cannot tell what {spec!r} is: expected a .gz capture, a folder, .csv or .parquet"
    )
