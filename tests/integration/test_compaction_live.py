"""`k2 compact` against the live stack while `k2 ingest` commits every 0.1 s.

Checked on the raw table (rows == distinct (exchange, symbol, seq) == what was produced),
on the offsets the table records (a second ingest resumes and stores nothing), and through
the hybrid query (exactly the produced keys, the seam at the compaction snapshot).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from pyiceberg.table import Table

from k2lib.config import K2Settings
from k2lib.connect import load_k2_catalog
from k2lib.query import HybridQueryEngine
from k2lib.storage.table import ensure_table, latest_offsets, stored_keys
from k2lib.testing import next_seq, produce, synthetic_trades
from k2lib.wire.schema import TradeBatch
from tests.helpers import last_json, run_k2

pytestmark = [pytest.mark.integration]

MIN = 60_000_000
CHUNKS = 40
CHUNK_ROWS = 750


def feed() -> TradeBatch:
    """30,000 trades over the last 20 minutes, gap-free per symbol."""
    start = time.time_ns() // 1000 - 20 * MIN
    seqs: dict[str, int] = {}
    parts = []
    for i in range(CHUNKS):
        span = 20 * MIN // CHUNKS
        part = synthetic_trades(
            CHUNK_ROWS, start_us=start + i * span, span_us=span, first_seq=seqs, seed=i
        )
        seqs = next_seq(part, seqs)
        parts.append(part)
    return TradeBatch.concat(parts)


def wait_for_files(table: Table, n: int, ingest: subprocess.Popen[str]) -> None:
    """Until ingest has committed `n` data files (a bounded wait, not a timing check)."""
    for _ in range(600):
        table.refresh()
        if table.current_snapshot() is not None and len(table.inspect.files()) >= n:
            return
        assert ingest.poll() is None, ingest.communicate()[1]
        time.sleep(0.2)
    raise AssertionError(f"ingest committed fewer than {n} files in 2 minutes")


def test_compaction_while_ingest_commits_keeps_the_table_and_the_seam_exact(
    k2_settings: K2Settings, k2_env: dict[str, str]
) -> None:
    settings = k2_settings
    batch = feed()
    table = ensure_table(load_k2_catalog(settings), settings.table)
    command = ["ingest", "--until-idle", "4", "--commit-interval", "0.1"]
    ingest = subprocess.Popen(
        [sys.executable, "-m", "k2lib.cli.main", *command],
        env={**os.environ, **k2_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def publish() -> None:  # paced, so ingest makes many small commits meanwhile
        for i in range(CHUNKS):
            rows = np.arange(i * CHUNK_ROWS, (i + 1) * CHUNK_ROWS)
            produce(settings, settings.topic, batch.take(rows))
            time.sleep(0.25)

    producer = threading.Thread(target=publish, daemon=True)
    producer.start()
    wait_for_files(table, 4, ingest)
    runs = [last_json(run_k2("compact", "--min-files", "4", env=k2_env).stdout)]
    while producer.is_alive():  # compact again while ingest keeps committing
        runs.append(last_json(run_k2("compact", "--min-files", "4", env=k2_env).stdout))
    producer.join()
    out, err = ingest.communicate(timeout=300)
    assert ingest.returncode == 0, err
    first = last_json(out)
    final = last_json(run_k2("compact", "--min-files", "2", env=k2_env).stdout)
    runs.append(final)
    print("compactions", runs, "ingest", first)

    # The first compaction started with at least 4 small files while ingest was committing;
    # the last one left each day partition in one file.
    assert runs[0]["files_rewritten"] >= 4, runs
    table.refresh()
    assert final["files_after"] <= 2, final  # one per day (two only across midnight UTC)

    keys = stored_keys(table)
    want = {
        (e.decode(), s.decode(), 0, int(q))
        for e, s, q in zip(batch.exchange, batch.symbol, batch.seq, strict=True)
    }
    assert len(keys) == len(set(keys)) == len(want) == CHUNKS * CHUNK_ROWS
    assert set(keys) == want

    # The compaction snapshot records the position ingest reached: resume stores nothing.
    recorded = latest_offsets(table)
    assert recorded.snapshot_id == table.current_snapshot().snapshot_id
    assert sum(recorded.offsets.values()) == len(want)
    second = last_json(run_k2("ingest", "--until-idle", "1", env=k2_env).stdout)
    assert second["written"] == 0, second

    start, end = int(batch.exch_ts.min()), int(batch.exch_ts.max()) + 1
    symbols = sorted({s.decode() for s in batch.symbol})
    with HybridQueryEngine(settings) as engine:
        result = engine.query(symbols, start, end)
    got = list(
        zip(
            result.rows.column("exchange").to_pylist(),
            result.rows.column("symbol").to_pylist(),
            result.rows.column("session").to_pylist(),
            result.rows.column("seq").to_pylist(),
            strict=True,
        )
    )
    assert len(got) == len(set(got)) and set(got) == want
    assert result.provenance.rows_by_source["kafka"] == 0
