"""Notebook 04: the hybrid query. One answer from the Iceberg history and the Kafka tail.

`build_query_demo` publishes an hour of seeded synthetic trades ending at "now" (the
anchor). Everything older than the last `tail_minutes` is ingested into Iceberg; the last
`tail_minutes` stay only in Kafka. A query for "the last N minutes" is then answered from
both, joined at the offsets the snapshot recorded. Windows are anchored at the moment the
feed was stamped, so the same window always holds the same trades (and nbval can compare
the counts), while the query itself runs against the live stack.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from k2lib.demo.context import DemoContext
from k2lib.demo.workspace import Workspace, reset_workspace
from k2lib.feeds import SourceReport
from k2lib.feeds.publisher import replay
from k2lib.feeds.synthetic import SyntheticConfig, SyntheticFeed
from k2lib.ingestion.pipeline import IngestConfig, IngestPipeline
from k2lib.ingestion.stages import Stages
from k2lib.monitoring import new_registry
from k2lib.query.hybrid import HybridQueryEngine
from k2lib.query.provenance import QueryResult
from k2lib.viz.charts_query import hybrid_figure
from k2lib.viz.widgets import QueryControl
from k2lib.wire.schema import TradeBatch

__all__ = [
    "QueryDemo",
    "build_query_demo",
    "catch_up",
    "demo_figure",
    "kafka_only_moment",
    "query_control",
    "query_line",
    "query_window",
]

MINUTE_US = 60_000_000
HOUR_RECORDS_MARGIN = 1.15  # Poisson arrivals: generate a little more than an hour's worth
ONE_COMMIT = IngestConfig(commit_rows=10**9, commit_interval_s=3600.0)
SYMBOLS = 3  # BTCUSDT, ETHUSDT, SOLUSDT


class _Slice:
    """The records of a synthetic feed with `lo <= exch_ts < hi`."""

    def __init__(self, feed: SyntheticFeed, lo: int, hi: int, name: str) -> None:
        self.feed, self.lo, self.hi, self.name = feed, lo, hi, name
        self.report = SourceReport()

    def batches(self, chunk: int = 50_000) -> Iterator[TradeBatch]:
        for batch in self.feed.batches(chunk):
            keep = np.flatnonzero((batch.exch_ts >= self.lo) & (batch.exch_ts < self.hi))
            if keep.size:
                self.report.records += int(keep.size)
                yield batch.take(keep)


@dataclass
class QueryDemo:
    workspace: Workspace
    engine: HybridQueryEngine
    anchor_us: int  # "now" when the feed was stamped; every window ends here
    seam_us: int  # older than this went to Iceberg; newer is only in Kafka (until catch_up)
    symbols: tuple[str, ...]
    exchange: str
    tail_minutes: int
    in_iceberg: int
    in_kafka_only: int

    def line(self) -> str:
        return (
            f"published one hour of {', '.join(self.symbols)}: {self.in_iceberg:,} trades "
            f"ingested into Iceberg, the last {self.tail_minutes} minutes "
            f"({self.in_kafka_only:,} trades) only in Kafka"
        )


def build_query_demo(ctx: DemoContext, *, tail_minutes: int = 5, seed: int = 3) -> QueryDemo:
    ws = reset_workspace(ctx.settings, "query")
    anchor = (time.time_ns() // 1_000_000_000) * 1_000_000
    start = anchor - 60 * MINUTE_US
    seam = anchor - tail_minutes * MINUTE_US
    probe = SyntheticFeed(SyntheticConfig(seed=seed, records=1, symbols=SYMBOLS))
    records = int(float(probe.rate.sum()) * 3600 * HOUR_RECORDS_MARGIN)
    config = SyntheticConfig(seed=seed, records=records, symbols=SYMBOLS, start_us=start)
    old = _Slice(SyntheticFeed(config), start, seam, "history")
    published = replay(old, ws.settings, seed=seed)
    pipeline = IngestPipeline.from_settings(
        ws.settings, config=ONE_COMMIT, registry=new_registry(), stages=Stages()
    )
    pipeline.run(max_messages=published["published"], until_idle_s=20.0)
    tail = replay(_Slice(SyntheticFeed(config), seam, anchor, "tail"), ws.settings, seed=seed)
    engine = HybridQueryEngine(ws.settings, registry=new_registry())
    return QueryDemo(
        ws,
        engine,
        anchor,
        seam,
        tuple(SyntheticFeed(config).symbols),
        config.exchange,
        tail_minutes,
        published["published"],
        tail["published"],
    )


def query_window(demo: QueryDemo, symbol: str, minutes: int, source: str = "hybrid") -> QueryResult:
    """Trades of `symbol` in the `minutes` before the anchor, from `source`."""
    return demo.engine.query(
        symbol,
        demo.anchor_us - minutes * MINUTE_US,
        demo.anchor_us,
        exchange=demo.exchange,
        source=source,
    )


def _by_source(result: QueryResult) -> dict[str, int]:
    rows = result.provenance.rows_by_source
    return {"iceberg": int(rows.get("iceberg", 0)), "kafka": int(rows.get("kafka", 0))}


def query_line(result: QueryResult, symbol: str, minutes: int) -> str:
    """Counts and seam are exact; the latency (last) changes run to run."""
    p = result.provenance
    n = _by_source(result)
    offsets = " ".join(f"p{k}:{'start' if v < 0 else v}" for k, v in sorted(p.seam.items()))
    where = {
        "offset": f"Kafka tail read from offsets {offsets}",
        "historical": f"snapshot S covers Kafka up to {offsets}",
        "realtime": f"Kafka read from {offsets}",
    }.get(p.mode, f"seam {offsets}")
    return (
        f"{symbol}, last {minutes} min, {p.requested_source}: {len(result):,} rows = "
        f"{n['iceberg']:,} from Iceberg + {n['kafka']:,} from Kafka; {where}; "
        f"{p.duplicates_removed} duplicates removed; "
        f"latency {p.latency_ms.get('total', 0.0):.1f}ms"
    )


def demo_figure(demo: QueryDemo, result: QueryResult, symbol: str, minutes: int) -> go.Figure:
    """`hybrid_figure` on this demo's time axis (minutes before the anchor)."""
    return hybrid_figure(
        result, anchor_us=demo.anchor_us, seam_us=demo.seam_us, symbol=symbol, minutes=minutes
    )


def query_control(demo: QueryDemo, *, window: int = 15) -> QueryControl:
    """Symbol, window 1-60 min and source; every change runs a live query."""

    def run(symbol: str, minutes: int, source: str) -> tuple[go.Figure, str]:
        result = query_window(demo, symbol, minutes, source)
        return demo_figure(demo, result, symbol, minutes), query_line(result, symbol, minutes)

    return QueryControl(run, demo.symbols, window=window)


def kafka_only_moment(demo: QueryDemo, symbol: str = "BTCUSDT") -> list[str]:
    """The last minutes, asked of Iceberg alone and of the hybrid engine."""
    minutes = demo.tail_minutes
    lines = []
    for source in ("historical", "hybrid"):
        result = query_window(demo, symbol, minutes, source)
        n = _by_source(result)
        lines.append(
            f"{symbol}, last {minutes} min, {source:10s}: {len(result):>6,} rows "
            f"({n['iceberg']:,} Iceberg, {n['kafka']:,} Kafka)"
        )
    return lines


def catch_up(demo: QueryDemo) -> str:
    """Ingest the tail: the seam moves forward, the answer must not change."""
    pipeline = IngestPipeline.from_settings(
        demo.workspace.settings, config=ONE_COMMIT, registry=new_registry(), stages=Stages()
    )
    summary = pipeline.run(max_messages=demo.in_kafka_only, until_idle_s=20.0)
    demo.seam_us = demo.anchor_us
    return f"ingested the Kafka-only tail: {summary['written']:,} rows committed"
