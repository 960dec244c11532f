"""Helpers tests share: the real `k2` CLI and its output, the table read back, the memory
broker restarted, trades built, cut into batches and deduplicated by hand, and trade files
written."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from k2lib.config import K2Settings


def run_k2(
    *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real `k2` CLI in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "k2lib.cli.main", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"k2 {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def last_json(stdout: str) -> dict:
    """The JSON summary a run prints as its last line of stdout."""
    return json.loads(stdout.strip().splitlines()[-1])


def replay_with_truth(
    tmp_path: Path, *args: str, env: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`k2 replay *args`, writing the ground truth of its faults under `tmp_path`: the run's
    JSON summary, and that truth."""
    path = tmp_path / "truth.json"
    summary = last_json(run_k2("replay", *args, "--truth", str(path), env=env).stdout)
    return summary, json.loads(path.read_text())


def ingest_until_killed(
    args: Sequence[str], env: dict[str, str], rng: random.Random, wait_s: tuple[float, float]
) -> bool:
    """Start `k2 ingest *args`, give it a random number of seconds in `wait_s`, and SIGKILL
    it if it is still running then. Whether it was killed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "k2lib.cli.main", "ingest", *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(rng.uniform(*wait_s))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return True


def stored_keys(settings) -> list[tuple[str, str, int, int]]:
    """Every `(exchange, symbol, session, seq)` in the settings' Iceberg table, duplicates
    included."""
    from k2lib.connect import load_k2_catalog
    from k2lib.storage.table import stored_keys as table_keys

    return table_keys(load_k2_catalog(settings).load_table(settings.table))


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MemoryBroker:
    """K2's own broker (its log in memory) on a free loopback port of its own, recorded under
    `state_dir`, not the stack's: restarting it wipes no one else's topics. `settings` are
    the stack's pointed at it; a context manager starts it and stops it."""

    def __init__(self, stack_settings: K2Settings, state_dir: Path) -> None:
        from k2lib.stack.process import ServiceProcess
        from k2lib.stack.services import broker_process

        port = free_port()
        self.settings = stack_settings.with_(kafka_bootstrap=f"127.0.0.1:{port}")
        stack_like = broker_process(self.settings)  # the stack's, but for its record
        self.process = ServiceProcess(
            name="broker",
            argv=stack_like.argv,
            host=stack_like.host,
            port=port,
            state_dir=state_dir,
            ready=stack_like.ready,
        )

    def __enter__(self) -> MemoryBroker:
        self.process.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.process.stop()

    def restart(self, settings: K2Settings) -> None:
        """Stop and start it (every topic is gone), then create `settings`' topic and DLQ
        topic again, empty."""
        from k2lib.connect import create_topics

        self.process.stop()
        self.process.start()
        create_topics(settings, {settings.topic: settings.partitions, settings.dlq_topic: 1})


def after_kills(settings) -> list[str]:
    """`k2 ingest` options for the run that settles what SIGKILLed group members left. A
    killed member stays in the group until its session times out; noida-db never evicts it
    (docs/operations/brokers.md), so on an external broker the run reads alone, which the
    compare-and-set commit makes as safe."""
    return ["--alone"] if settings.kafka_external else []


def write_parquet_trades(
    path: Path,
    symbol: str,
    price: Any,
    qty: Any,
    *,
    seq: Sequence[int] | None = None,
    ts: Sequence[str] | None = None,
) -> None:
    """A Parquet file of binance `symbol` trades with these `price` and `qty` columns (lists
    or Arrow arrays), seqs 0, 1, ... and one timestamp unless `seq` and `ts` are given."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(price)
    columns = {
        "exchange": ["binance"] * n,
        "symbol": [symbol] * n,
        "seq": list(seq if seq is not None else range(n)),
        "ts": list(ts if ts is not None else ["2024-08-09T00:00:00+00:00"] * n),
        "price": price,
        "qty": qty,
    }
    pq.write_table(pa.table(columns), path)


def tier3_counts(shed: int, deferred: int, backfilled: int) -> dict[str, Any]:
    """`LoadShedder.counts()` after records of tier 3 only, none pending."""
    counts: dict[str, Any] = {
        stage: {"1": 0, "2": 0, "3": n}
        for stage, n in (("shed", shed), ("deferred", deferred), ("backfilled", backfilled))
    }
    return {**counts, "pending": 0}


def symbol_trades(
    seqs: Sequence[int], ts: Sequence[int], *, symbol: str = "BTCUSDT", price: int = 1, qty: int = 1
) -> Any:
    """A `TradeBatch` of binance `symbol` trades: these `seqs` at these `ts` (exch_ts, and
    received at once), all at one `price` and `qty` (in wire units)."""
    from k2lib.wire.schema import TradeBatch

    n = len(seqs)
    return TradeBatch.from_columns(
        exchange=["binance"] * n,
        symbol=[symbol] * n,
        seq=list(seqs),
        exch_ts=list(ts),
        recv_ts=list(ts),
        price=[price] * n,
        qty=[qty] * n,
    )


def split_at(batch: Any, cuts: Iterable[int]) -> list[Any]:
    """`batch` cut at each of `cuts` (taken modulo len(batch) + 1) into consecutive, non-empty
    parts, in order, as a feed may deliver it."""
    import numpy as np

    n = len(batch)
    bounds = sorted({0, n, *(c % (n + 1) for c in cuts)})
    return [batch.take(np.arange(lo, hi)) for lo, hi in itertools.pairwise(bounds)]


def first_occurrences(symbols: Any, seqs: Any) -> list[bool]:
    """True where a (symbol, seq) key stands for the first time: what exact dedup keeps."""
    seen: set[tuple[Any, Any]] = set()
    firsts = []
    for key in zip(symbols.tolist(), seqs.tolist(), strict=True):
        firsts.append(key not in seen)
        seen.add(key)
    return firsts
