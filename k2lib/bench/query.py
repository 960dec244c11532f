"""`k2 bench query`: hybrid vs historical-only latency for one symbol over 15 minutes.

The data set: an Iceberg table of `rows` trades over two days (six symbols, written in
time-ordered 1M-row commits sorted like the ingest writer's), whose snapshot records
offset 0 of every partition of the bench topic, plus `tail` trades in that topic covering
the 10 minutes after the table ends. A 15-minute window ending at the tail's end therefore
needs 5 minutes of Iceberg and 10 minutes of Kafka. Both are built once and reused.

`value` is the hybrid p50 in ms; `baseline` the historical-only p50 of the same window in
the same run; `ratio = value / baseline`.

`run(compaction=True)` (`k2 bench query --compaction`) adds the compaction section
(`run_compaction`): a table written by 2,000 micro-batch commits (500 rows each, one per
second of feed time, snapshots expired as ingest does), queried for the last 15 minutes
before and after `compact()`, against the same rows written in large batches. Only the
Iceberg side changes with compaction, so it times historical-only queries.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

from k2lib.config import K2Settings
from k2lib.connect import create_topics, load_k2_catalog
from k2lib.query import HybridQueryEngine, KafkaTail, TailConfig
from k2lib.storage.compaction import CompactionConfig, compact
from k2lib.storage.maintenance import MaintenanceConfig, run_maintenance
from k2lib.storage.table import TABLE_PROPERTIES, ensure_table, latest_offsets
from k2lib.storage.writer import IcebergWriter
from k2lib.testing import (
    DEFAULT_SYMBOLS,
    append_with_offsets,
    next_seq,
    produce,
    synthetic_trades,
)
from k2lib.wire.schema import TradeBatch

__all__ = ["BENCH_TABLE", "BENCH_TOPIC", "prepare", "run", "run_compaction"]

BENCH_TABLE = "bench.trades_10m"
BENCH_TOPIC = "bench.trades"
BENCH_PARTITIONS = 4
SYMBOL = "BTCUSDT"
EXCHANGE = "binance"
CHUNK_ROWS = 1_000_000
MINUTE_US = 60_000_000
HISTORY_START_US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z: fixed, so runs reuse data
HISTORY_SPAN_US = 2 * 24 * 60 * MINUTE_US
TAIL_SPAN_US = 10 * MINUTE_US
WINDOW_US = 15 * MINUTE_US
WARMUP = 3
# Rows per Parquet row group: the table's own layout by default, so the bench measures a
# table like market.trades. `run(row_group_rows=16_384)` measures the smaller groups that
# ADR 006 recommends (the writer sorts by symbol then time, so a 15-minute read then
# decodes one or two small groups instead of two 131k-row ones).
ROW_GROUP_PROPERTY = "write.parquet.row-group-limit"
ROW_GROUP_ROWS = int(TABLE_PROPERTIES[ROW_GROUP_PROPERTY])
TAIL_FIRST_SEQ = 10**12
COMPACTION_TABLE = "bench.compaction"
MICRO_COMMITS = 2_000
MICRO_ROWS = 500
MICRO_STEP_US = 1_000_000  # one commit per second of feed time: ingest's default cadence
COMPACTION_RATIO_MAX = 1.2

Log = Callable[[str], None]


def run(
    settings: K2Settings,
    *,
    rows: int = 10_000_000,
    tail: int = 100_000,
    queries: int = 50,
    row_group_rows: int = ROW_GROUP_ROWS,
    compaction: bool = False,
    log: Log | None = None,
) -> dict[str, Any]:
    """Prepare (or reuse) the data set, then time `queries` of each source, interleaved.
    `compaction`: also run the compaction section (`run_compaction`)."""
    say = log or _stderr
    name = BENCH_TABLE if row_group_rows == ROW_GROUP_ROWS else f"{BENCH_TABLE}_rg{row_group_rows}"
    bench = settings.with_(table=name, topic=BENCH_TOPIC, partitions=BENCH_PARTITIONS)
    facts = prepare(bench, rows=rows, tail=tail, row_group_rows=row_group_rows, log=say)
    end_us = HISTORY_START_US + HISTORY_SPAN_US + TAIL_SPAN_US
    start_us = end_us - WINDOW_US
    timings: dict[str, list[float]] = {"hybrid": [], "historical": []}
    answers: dict[str, Any] = {}
    with HybridQueryEngine(bench) as engine:
        say(f"timing {queries} queries per source for {SYMBOL} over 15 minutes")
        for i in range(WARMUP + queries):
            for source in ("hybrid", "historical") if i % 2 else ("historical", "hybrid"):
                t = time.perf_counter()
                result = engine.query(SYMBOL, start_us, end_us, exchange=EXCHANGE, source=source)
                elapsed = (time.perf_counter() - t) * 1e3
                if i >= WARMUP:
                    timings[source].append(elapsed)
                answers[source] = result.provenance
        cold = _cold_hybrid(bench, start_us, end_us, max(5, queries // 5))
    hybrid_p50 = statistics.median(timings["hybrid"])
    hist_p50 = statistics.median(timings["historical"])
    prov = answers["hybrid"]
    extra = {"compaction": run_compaction(settings, log=say)} if compaction else {}
    return {
        "name": "query",
        "value": round(hybrid_p50, 3),
        "unit": "ms",
        "baseline": round(hist_p50, 3),
        "baseline_label": "historical-only p50 (Iceberg at the same snapshot, same window)",
        "ratio": round(hybrid_p50 / hist_p50, 3),
        "ratio_label": "ratio (hybrid p50 / historical p50)",
        "hybrid_p50_ms": round(hybrid_p50, 3),
        "hybrid_p99_ms": round(_p99(timings["hybrid"]), 3),
        "historical_p50_ms": round(hist_p50, 3),
        "historical_p99_ms": round(_p99(timings["historical"]), 3),
        "hybrid_cold_tail_p50_ms": round(statistics.median(cold), 3),
        "hybrid_cold_tail_p99_ms": round(_p99(cold), 3),
        "queries": queries,
        "rows_returned": dict(prov.rows_by_source),
        "kafka_partitions_read": list(prov.partitions),
        "table_rows": facts["table_rows"],
        "tail_records": facts["tail_records"],
        "files": facts["files"],
        "row_group_rows": row_group_rows,
        "table": name,
        "topic": BENCH_TOPIC,
        "targets": {"p50_ms_max": 100, "ratio_max": 1.5},
        "met": hybrid_p50 <= 100 and hybrid_p50 / hist_p50 <= 1.5,
        **extra,
    }


def run_compaction(
    settings: K2Settings,
    *,
    commits: int = MICRO_COMMITS,
    rows_per_commit: int = MICRO_ROWS,
    queries: int = 10,
    log: Log | None = None,
) -> dict[str, Any]:
    """Historical p50 of the last 15 minutes of a micro-batch table before and after
    compaction, and of the same rows written in large batches. The micro-batch table is
    rebuilt each run (compaction changes it); the large-batch one is reused."""
    say = log or _stderr
    catalog = load_k2_catalog(settings)
    micro_name, large_name = f"{COMPACTION_TABLE}_micro", f"{COMPACTION_TABLE}_large"
    batches = _micro_batches(commits, rows_per_commit)
    t = time.perf_counter()
    micro = _micro_table(catalog, micro_name, batches, say)
    build_s = time.perf_counter() - t
    large = _large_table(catalog, large_name, batches, say)
    end_us = HISTORY_START_US + commits * MICRO_STEP_US
    window = (max(HISTORY_START_US, end_us - WINDOW_US), end_us)

    def p50(name: str) -> tuple[float, int]:
        return _historical_p50(settings.with_(table=name, topic=BENCH_TOPIC), window, queries)

    files_before = _file_count(micro)
    say(f"timing {queries} historical queries on {micro_name} ({files_before} files)")
    before_ms, before_rows = p50(micro_name)
    say("compacting")
    done = compact(micro, CompactionConfig(), progress=say).summary()
    after_ms, after_rows = p50(micro_name)
    large_ms, large_rows = p50(large_name)
    if not before_rows == after_rows == large_rows:
        raise AssertionError(f"answers differ: {before_rows}, {after_rows}, {large_rows}")
    ratio = after_ms / large_ms
    return {
        "commits": commits,
        "rows_per_commit": rows_per_commit,
        "table_rows": commits * rows_per_commit,
        "build_seconds": round(build_s, 1),
        "rows_returned": after_rows,
        "queries": queries,
        "files_before": files_before,
        "files_after": _file_count(micro),
        "files_large": _file_count(large),
        "p50_before_ms": round(before_ms, 3),
        "p50_after_ms": round(after_ms, 3),
        "p50_large_batches_ms": round(large_ms, 3),
        "ratio_after_to_large": round(ratio, 3),
        "speedup": round(before_ms / after_ms, 2),
        "compact": done,
        "target": f"p50 after <= {COMPACTION_RATIO_MAX} x large-batch p50",
        "met": ratio <= COMPACTION_RATIO_MAX,
        "tables": [micro_name, large_name],
    }


def _micro_batches(commits: int, rows: int) -> list[TradeBatch]:
    out: list[TradeBatch] = []
    seqs: dict[str, int] = {}
    for i in range(commits):
        start = HISTORY_START_US + i * MICRO_STEP_US
        batch = synthetic_trades(
            rows, start_us=start, span_us=MICRO_STEP_US, first_seq=seqs, seed=i
        )
        seqs = next_seq(batch, seqs)
        out.append(batch)
    return out


def _micro_table(catalog: Any, name: str, batches: list[TradeBatch], log: Log) -> Table:
    """One IcebergWriter commit per batch, with ingest's snapshot expiry (no compaction)."""
    with contextlib.suppress(NoSuchTableError):
        catalog.purge_table(name)
    table = ensure_table(catalog, name)
    partitions = range(BENCH_PARTITIONS)
    writer = IcebergWriter(table, BENCH_TOPIC, partitions=partitions)
    upkeep = MaintenanceConfig(compact_every_commits=0)
    offset = 0
    for i, batch in enumerate(batches, 1):
        offset += len(batch)
        writer.commit(batch, dict.fromkeys(partitions, offset))
        run_maintenance(table, upkeep, commits=i, skip_optional_work=False)
        if i % 200 == 0:
            log(f"{name}: {i}/{len(batches)} micro-batch commits")
    return table


def _large_table(catalog: Any, name: str, batches: list[TradeBatch], log: Log) -> Table:
    rows = sum(len(b) for b in batches)
    try:
        table = catalog.load_table(name)
        snap = table.current_snapshot()
        if snap is not None and int(snap.summary["total-records"]) == rows:
            log(f"reusing {name} ({rows} rows)")
            return table
        catalog.purge_table(name)
    except NoSuchTableError:
        pass
    table = ensure_table(catalog, name)
    whole = TradeBatch.concat(batches)
    offsets = dict.fromkeys(range(BENCH_PARTITIONS), rows)
    for start in range(0, rows, CHUNK_ROWS):
        chunk = whole.take(np.arange(start, min(rows, start + CHUNK_ROWS)))
        append_with_offsets(table, chunk, BENCH_TOPIC, offsets)
    log(f"{name}: {rows} rows in {-(-rows // CHUNK_ROWS)} large commits")
    return table


def _historical_p50(
    settings: K2Settings, window: tuple[int, int], queries: int
) -> tuple[float, int]:
    timings, rows = [], 0
    with HybridQueryEngine(settings) as engine:
        for i in range(WARMUP + queries):
            t = time.perf_counter()
            result = engine.query(SYMBOL, *window, exchange=EXCHANGE, source="historical")
            if i >= WARMUP:
                timings.append((time.perf_counter() - t) * 1e3)
            rows = len(result)
    return statistics.median(timings), rows


def _file_count(table: Table) -> int:
    table.refresh()
    return len(table.inspect.files()) if table.current_snapshot() is not None else 0


def prepare(
    settings: K2Settings,
    *,
    rows: int,
    tail: int,
    row_group_rows: int = ROW_GROUP_ROWS,
    log: Log = print,
) -> dict[str, Any]:
    """Build the bench table and topic unless a previous run left them complete."""
    catalog = load_k2_catalog(settings)
    table = _history(catalog, settings, rows, row_group_rows, log)
    create_topics(settings, {settings.topic: settings.partitions})
    have = _tail_count(settings)
    if have < tail:
        log(f"producing {tail - have} tail records to {settings.topic}")
        batch = _tail_batch(tail)
        produce(settings, settings.topic, batch.take(np.arange(have, tail)))
        have = _tail_count(settings)
    snapshot = table.current_snapshot()
    summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    return {
        "table_rows": int(summary.get("total-records", 0)),
        "files": int(summary.get("total-data-files", 0)),
        "tail_records": have,
    }


def _history(catalog: Any, settings: K2Settings, rows: int, row_group_rows: int, log: Log) -> Table:
    try:
        table = catalog.load_table(settings.table)
        snap = table.current_snapshot()
        recorded = latest_offsets(table)
        layout = table.properties.get(ROW_GROUP_PROPERTY) == str(row_group_rows)
        complete = snap is not None and int(snap.summary["total-records"]) == rows
        if complete and layout and recorded.recorded:
            log(f"reusing {settings.table} ({rows} rows)")
            return table
        log(f"{settings.table} is incomplete; rebuilding it")
        catalog.purge_table(settings.table)  # drop and delete its files
    except NoSuchTableError:
        pass
    table = ensure_table(catalog, settings.table)
    with table.transaction() as tx:
        tx.set_properties({ROW_GROUP_PROPERTY: str(row_group_rows)})
    seqs: dict[str, int] = {}
    chunks = max(1, -(-rows // CHUNK_ROWS))
    span = HISTORY_SPAN_US // chunks
    offsets = dict.fromkeys(range(settings.partitions), 0)
    for i in range(chunks):
        n = min(CHUNK_ROWS, rows - i * CHUNK_ROWS)
        t = time.perf_counter()
        batch = synthetic_trades(
            n, start_us=HISTORY_START_US + i * span, span_us=span, first_seq=seqs, seed=i
        )
        seqs = next_seq(batch, seqs)
        # Backfilled history never passed through this topic: offset -1, and the snapshot
        # records offset 0 everywhere, so the whole topic is the tail.
        batch = batch.with_kafka(np.full(n, -1, np.int32), np.full(n, -1, np.int64))
        append_with_offsets(table, batch, settings.topic, offsets)
        log(f"history chunk {i + 1}/{chunks}: {n} rows in {time.perf_counter() - t:.1f}s")
    return table


def _tail_batch(tail: int) -> TradeBatch:
    """The deterministic tail. Its seqs start past any the history can hold, so the two
    never share a key; the merge's dedup has nothing to remove here."""
    seqs = dict.fromkeys(DEFAULT_SYMBOLS, TAIL_FIRST_SEQ)
    return synthetic_trades(
        tail,
        start_us=HISTORY_START_US + HISTORY_SPAN_US,
        span_us=TAIL_SPAN_US,
        first_seq=seqs,
        seed=10_000,
    )


def _tail_count(settings: K2Settings) -> int:
    tail = KafkaTail(settings, config=TailConfig(cache_records=0, pool_size=0))
    result = tail.read(settings.topic, dict.fromkeys(range(settings.partitions), 0))
    return sum(result.end_offsets.values())


def _cold_hybrid(settings: K2Settings, start_us: int, end_us: int, n: int) -> list[float]:
    """Hybrid latency with nothing cached between queries: a new engine (and tail) each."""
    out = []
    for _ in range(n):
        with HybridQueryEngine(settings) as engine:
            t = time.perf_counter()
            engine.query(SYMBOL, start_us, end_us, exchange=EXCHANGE)
            out.append((time.perf_counter() - t) * 1e3)
    return out


def _p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


def _stderr(message: str) -> None:
    # Progress for `k2 bench query`: stdout carries only the JSON result.
    print(f"bench query: {message}", file=sys.stderr, flush=True)
