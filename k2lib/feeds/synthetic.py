"""A seeded synthetic feed shaped like the real captures.

Arrivals are a Poisson process per symbol (BTCUSDT about 15 trades/s, as in the spot
capture), prices a geometric random walk rounded to the tick, sizes log-normal around a
typical notional. Each symbol has its own contiguous trade ids. The same seed gives the
same trades; only `start_us` shifts them in time (default: the feed ends about now).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from k2lib.feeds.base import DEFAULT_CHUNK, SourceReport
from k2lib.wire.schema import SCALE, TradeBatch

__all__ = ["MAJORS", "SyntheticConfig", "SyntheticFeed", "synthetic_symbols"]

EXCHANGE = "synth"
# symbol: (start price, trades per second)
MAJORS: dict[str, tuple[float, float]] = {
    "BTCUSDT": (61_800.0, 15.0),
    "ETHUSDT": (2_600.0, 9.0),
    "SOLUSDT": (150.0, 5.0),
    "BNBUSDT": (520.0, 3.0),
    "XRPUSDT": (0.55, 4.0),
    "ADAUSDT": (0.35, 2.0),
    "DOGEUSDT": (0.10, 3.0),
    "AVAXUSDT": (25.0, 2.0),
    "DOTUSDT": (4.5, 1.5),
    "LINKUSDT": (10.0, 1.5),
}
PER_TRADE_VOL = 0.00012  # log-return stdev per trade: BTC spot moves ~1e-4 per trade
MEDIAN_NOTIONAL_USD = 300.0
QTY_DECIMALS = 5


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    seed: int = 7
    records: int = 100_000
    symbols: int = len(MAJORS)
    start_us: int | None = None
    exchange: str = EXCHANGE


def synthetic_symbols(n: int) -> list[str]:
    """The majors first, then SYM0001, SYM0002, ... up to n symbols."""
    names = list(MAJORS)[:n]
    names += [f"SYM{i:04d}" for i in range(1, n - len(names) + 1)]
    return names


class SyntheticFeed:
    def __init__(self, config: SyntheticConfig = SyntheticConfig()) -> None:
        self.config = config
        self.name = f"synthetic(seed={config.seed})"
        self.report = SourceReport()
        self.symbols = synthetic_symbols(config.symbols)
        rng = np.random.default_rng(config.seed)
        extra = len(self.symbols) - len(MAJORS)
        self.start_price = np.array(
            [MAJORS[s][0] for s in self.symbols if s in MAJORS]
            + list(rng.uniform(1.0, 100.0, max(extra, 0)))
        )
        self.rate = np.array(
            [MAJORS[s][1] for s in self.symbols if s in MAJORS]
            + list(rng.uniform(0.2, 2.0, max(extra, 0)))
        )
        self.first_seq = rng.integers(1_000_000, 5_000_000_000, len(self.symbols))

    def batches(self, chunk: int = DEFAULT_CHUNK) -> Iterator[TradeBatch]:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed + 1)
        n_sym = len(self.symbols)
        total_rate = float(self.rate.sum())
        if cfg.start_us is not None:
            start_us = cfg.start_us
        else:  # end about now, so "the last 15 minutes" holds the newest trades
            start_us = int(time.time() * 1e6 - cfg.records / total_rate * 1e6)
        weights = self.rate / total_rate
        log_price = np.log(self.start_price)
        next_seq = self.first_seq.copy()
        clock_us = float(start_us)
        names = np.array(self.symbols, dtype="S16")
        done = 0
        while done < cfg.records:
            n = min(chunk, cfg.records - done)
            gaps_us = rng.exponential(1e6 / total_rate, n)
            ts = (clock_us + np.cumsum(gaps_us)).astype(np.int64)
            clock_us = float(ts[-1])
            code = rng.choice(n_sym, size=n, p=weights)
            seq = np.empty(n, np.int64)
            price = np.empty(n, np.float64)
            for s in np.unique(code):
                idx = np.flatnonzero(code == s)
                seq[idx] = next_seq[s] + np.arange(idx.size)
                next_seq[s] += idx.size
                path = log_price[s] + np.cumsum(rng.normal(0.0, PER_TRADE_VOL, idx.size))
                log_price[s] = path[-1]
                price[idx] = np.exp(path)
            tick = np.where(price >= 1.0, 0.01, 0.0001)
            price_units = (np.round(price / tick) * tick * SCALE).round().astype(np.int64)
            notional = MEDIAN_NOTIONAL_USD * rng.lognormal(0.0, 1.2, n)
            qty = np.maximum(np.round(notional / price, QTY_DECIMALS), 10.0**-QTY_DECIMALS)
            qty_units = (qty * SCALE).round().astype(np.int64)
            latency_us = rng.gamma(2.0, 1_500.0, n).astype(np.int64)
            yield TradeBatch.from_columns(
                exchange=np.full(n, cfg.exchange.encode(), dtype="S16"),
                symbol=names[code],
                seq=seq,
                exch_ts=ts,
                recv_ts=ts + latency_us,
                price=price_units,
                qty=qty_units,
                side=rng.integers(1, 3, n).astype(np.int8),
            )
            done += n
            self.report.records += n
