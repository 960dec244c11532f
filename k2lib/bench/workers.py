"""`k2 bench ingest --workers N`: 1 and N `k2 ingest` workers in one group, same backlog.

One topic of synthetic trades (many symbols, so the partitions hold similar shares) is
published once. Every arm reads all of it from offset 0 with a fresh consumer group (and, for
K2, a fresh table, so its Redis state and spill are fresh too):

- value: N `k2 ingest --until-idle` processes, the full stages (`build_stages`: sequence
  tracking, dedup, degradation) exactly as the command runs them, against 1 such process;
- baseline: N raw confluent-kafka group consumers (`k2lib.bench.raw_worker`: subscribe,
  consume, `decode_batch`, nothing stored) against 1: the client's own 1 -> N scaling.

Each worker is its own process (Python runs one process on one core). An arm's rate is the
backlog over the time from the group's first assignment to the table complete (the snapshot
whose total reaches the backlog; for the raw arm, the last message decoded): the group-join
wait before it is reported on its own (`join_wait_s`), and so is the idle wait after it.
Arms run in ABBA order and each keeps its best run, as `k2 bench ingest` does: other work
on a shared machine only ever slows a run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from k2lib.bench.ingest import forget_feed
from k2lib.config import K2Settings
from k2lib.connect import create_topics
from k2lib.errors import K2Error
from k2lib.feeds.publisher import replay
from k2lib.feeds.synthetic import SyntheticConfig, SyntheticFeed

__all__ = ["WorkerRun", "owned_at", "parse_assignments", "partitions_for", "run", "scaling"]

SYMBOLS = 400  # many keys, so every partition (and so every worker) gets a similar share
MIN_PARTITIONS = 4
IDLE_S = 5.0  # a worker ends this long after its partitions run dry (a loaded machine stalls)
RUNS_PER_ARM = 2  # ABBA: 1, N, N, 1 for each client
ARM_TIMEOUT_S = 900.0
SCALING_TARGET = 1.3  # 2 workers on 2 cores
RAW_SHARE_TARGET = 0.8  # of the raw client's own scaling
_ASSIGNED = re.compile(r"assigned partitions \[([\d, ]*)\]")
_REVOKED = re.compile(r"revoked partitions \[([\d, ]*)\]")


class BenchError(K2Error):
    """A worker of the bench failed or the backlog did not arrive whole."""


def partitions_for(workers: int) -> int:
    """At least 4 partitions and an equal number per worker (4 for 2 or 4 workers, 6 for 3)."""
    per = -(-max(MIN_PARTITIONS, workers) // workers)
    return per * workers


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_assignments(log: str) -> list[tuple[float, frozenset[int]]]:
    """From a `k2 ingest -v` log: (wall time, partitions held from then on) at each
    assignment and revocation, in order."""
    held: set[int] = set()
    out: list[tuple[float, frozenset[int]]] = []
    for line in log.splitlines():
        assigned, revoked = _ASSIGNED.search(line), _REVOKED.search(line)
        if assigned is None and revoked is None:
            continue
        if assigned is not None:
            held.update(_ints(assigned.group(1)))
        if revoked is not None:
            held.difference_update(_ints(revoked.group(1)))
        # logging's default asctime: local time, milliseconds after the comma.
        at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        out.append((at, frozenset(held)))
    return out


def owned_at(events: list[tuple[float, frozenset[int]]], at: float) -> frozenset[int]:
    """The partitions a worker held at `at` (log times have millisecond resolution)."""
    held: frozenset[int] = frozenset()
    for when, partitions in events:
        if when > at + 0.001:
            break
        held = partitions
    return held


@dataclass(frozen=True, kw_only=True)
class WorkerRun:
    """One worker of an arm: what it read and when (epoch seconds)."""

    records: int
    spawned_at: float
    first_assigned_at: float
    ended_at: float  # its last message decoded, or its last commit that added rows
    partitions: tuple[int, ...]

    @property
    def msg_s(self) -> float:
        span = self.ended_at - self.first_assigned_at
        return self.records / span if span > 0 else 0.0


def scaling(one: float, many: float) -> float:
    return many / one if one > 0 else 0.0


def _arm_result(
    kind: str, workers: list[WorkerRun], records: int, complete_at: float
) -> dict[str, Any]:
    start = min(w.first_assigned_at for w in workers)
    spawned = min(w.spawned_at for w in workers)
    seconds = complete_at - start
    return {
        "kind": kind,
        "workers": len(workers),
        "msg_s": round(records / seconds, 1) if seconds > 0 else 0.0,
        "seconds": round(seconds, 3),
        "join_wait_s": round(start - spawned, 3),
        "last_join_s": round(max(w.first_assigned_at for w in workers) - spawned, 3),
        "per_worker": [
            {
                "records": w.records,
                "partitions": list(w.partitions),
                "msg_s": round(w.msg_s, 1),
                "join_wait_s": round(w.first_assigned_at - w.spawned_at, 3),
            }
            for w in workers
        ],
    }


def _spawn(args: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    """Start a worker writing to out.out and out.err (files, so no pipe can fill and block)."""
    with open(out.with_suffix(".out"), "wb") as stdout, open(out.with_suffix(".err"), "wb") as err:
        return subprocess.Popen([sys.executable, *args], env=env, stdout=stdout, stderr=err)


def _wait(procs: list[subprocess.Popen[bytes]], what: str) -> None:
    deadline = time.monotonic() + ARM_TIMEOUT_S
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
                p.wait()
            raise BenchError(f"{what}: a worker ran past {ARM_TIMEOUT_S:.0f} s") from None
        if proc.returncode != 0:
            raise BenchError(f"{what}: a worker exited with {proc.returncode}")


def _env(settings: K2Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        K2_HOME=str(settings.home),
        K2_TOPIC=settings.topic,
        K2_DLQ_TOPIC=settings.dlq_topic,
        K2_PARTITIONS=str(settings.partitions),
        PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
        **extra,
    )
    return env


def _raw_arm(settings: K2Settings, n: int, records: int, tag: str, work: Path) -> dict[str, Any]:
    group = f"bench-raw-{tag}-{uuid.uuid4().hex[:6]}"
    env = _env(settings)
    args = ["-m", "k2lib.bench.raw_worker", settings.topic, group, str(IDLE_S)]
    spawned = time.time()
    procs = [_spawn(args, env, work / f"raw-{group}-{i}") for i in range(n)]
    _wait(procs, f"raw consumers ({n})")
    runs = []
    for i in range(n):
        lines = (work / f"raw-{group}-{i}.out").read_text().strip().splitlines()
        out = json.loads(lines[-1])
        if out["first_assigned_at"] is None:
            raise BenchError(f"raw consumer {i} of {n} was never assigned a partition")
        runs.append(
            WorkerRun(
                records=out["consumed"],
                spawned_at=spawned,
                first_assigned_at=out["first_assigned_at"],
                ended_at=out["last_message_at"] or out["first_assigned_at"],
                partitions=tuple(out["partitions"]),
            )
        )
    consumed = sum(r.records for r in runs)
    if consumed < records:
        raise BenchError(f"raw consumers ({n}) decoded {consumed:,} of {records:,} records")
    result = _arm_result("raw", runs, records, max(r.ended_at for r in runs))
    result["decoded"] = consumed  # above the backlog if a moved partition was read twice
    return result


def _snapshots(settings: K2Settings, table: str) -> list[tuple[float, int, int, set[int]]]:
    """(time, added rows, total rows, partitions it committed) per snapshot, oldest first."""
    from k2lib.connect import load_k2_catalog
    from k2lib.storage.table import offsets_of

    loaded = load_k2_catalog(settings).load_table(table)
    out = []
    for snap in loaded.snapshots():
        props = snap.summary.additional_properties if snap.summary else {}
        k2 = offsets_of(snap)
        mine = {p for p, v in k2.versions.items() if v == k2.commit_number}
        added, total = int(props.get("added-records", 0)), int(props.get("total-records", 0))
        out.append((snap.timestamp_ms / 1000.0, added, total, mine))
    return sorted(out, key=lambda s: s[0])


def _k2_arm(settings: K2Settings, n: int, records: int, tag: str, work: Path) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:6]
    table = f"bench.workers_{tag}_{n}_{suffix}"
    arm = settings.with_(table=table)
    env = _env(arm, K2_TABLE=table)
    group = f"bench-workers-{tag}-{suffix}"
    args = ["-m", "k2lib.cli.main", "ingest", "-v", "--until-idle", str(IDLE_S)]
    args += ["--metrics-port", "0", "--group", group]
    spawned = time.time()
    procs = [_spawn(args, env, work / f"k2-{suffix}-{i}") for i in range(n)]
    _wait(procs, f"k2 ingest workers ({n})")
    snaps = _snapshots(settings, table)
    summaries = [
        json.loads((work / f"k2-{suffix}-{i}.out").read_text().strip().splitlines()[-1])
        for i in range(n)
    ]
    done = [s for s in snaps if s[2] >= records]
    if not done:
        said = [
            {k: s.get(k) for k in ("consumed", "written", "rewinds", "remaining", "offsets")}
            for s in summaries
        ]
        rows = snaps[-1][2] if snaps else 0
        raise BenchError(
            f"{n} k2 ingest workers left {table} incomplete ({rows:,} of {records:,} rows): "
            f"{json.dumps(said)}"
        )
    complete_at = done[0][0]
    runs = []
    for i, summary in enumerate(summaries):
        events = parse_assignments((work / f"k2-{suffix}-{i}.err").read_text())
        if not events:
            raise BenchError(f"k2 ingest worker {i} of {n} was never assigned a partition")
        # Its end: the last snapshot that added rows for partitions it held at the time
        # (partitions are disjoint between members, so that snapshot is its commit).
        ends = [t for t, added, _, parts in snaps if added and parts & owned_at(events, t)]
        first = events[0][0]
        runs.append(
            WorkerRun(
                records=int(summary["written"]),
                spawned_at=spawned,
                first_assigned_at=first,
                ended_at=max(ends) if ends else first,
                partitions=tuple(sorted(next((p for _, p in reversed(events) if p), ()))),
            )
        )
    result = _arm_result("k2", runs, records, complete_at)
    written = sum(r.records for r in runs)
    result.update(
        table=table,
        written=written,
        table_rows=snaps[-1][2],
        commits=sum(int(s["commits"]) for s in summaries),
        rewinds=sum(int(s["rewinds"]) for s in summaries),
        deferred_to_spill=sum(int(s.get("deferred", 0)) for s in summaries),
        complete=written == records and snaps[-1][2] == records,
    )
    forget_feed(arm)  # its sequence and dedup keys in Redis, and its spill
    return result


def _best(runs: list[dict[str, Any]], kind: str, n: int) -> dict[str, Any]:
    return max((r for r in runs if r["kind"] == kind and r["workers"] == n), key=_rate)


def _rate(r: dict[str, Any]) -> float:
    return float(r["msg_s"])


def run(
    settings: K2Settings, *, workers: int = 2, records: int = 1_000_000, seed: int = 5
) -> dict[str, Any]:
    if workers < 2:
        raise BenchError(f"--workers compares 1 with N workers: N must be >= 2, got {workers}")
    load_before = os.getloadavg()
    tag = uuid.uuid4().hex[:8]
    parts = partitions_for(workers)
    topic = settings.with_(
        topic=f"bench.workers.{tag}", dlq_topic=f"bench.workers.{tag}.dlq", partitions=parts
    )
    create_topics(topic, {topic.topic: parts, topic.dlq_topic: 1})
    feed = SyntheticFeed(
        SyntheticConfig(seed=seed, records=records, symbols=SYMBOLS, start_us=1_723_161_600_000_000)
    )
    published = replay(feed, topic)
    if published["delivered"] != records:
        raise BenchError(f"published {published['delivered']:,} of {records:,} records")
    started = time.monotonic()
    order = [1, workers, workers, 1][: 2 * RUNS_PER_ARM]
    runs: list[dict[str, Any]] = []
    # The workers' logs; kept (and named in the error) when a run fails.
    work = Path(tempfile.mkdtemp(prefix=f"bench-workers-{tag}-"))
    try:
        for kind in ("raw", "k2"):
            arm = _raw_arm if kind == "raw" else _k2_arm
            for n in order:
                runs.append(arm(topic, n, records, tag, work))
    except (BenchError, OSError, ValueError) as exc:
        raise BenchError(f"{exc} (worker logs in {work})") from exc
    shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    k2_1, k2_n = _best(runs, "k2", 1), _best(runs, "k2", workers)
    raw_1, raw_n = _best(runs, "raw", 1), _best(runs, "raw", workers)
    k2_scale, raw_scale = scaling(_rate(k2_1), _rate(k2_n)), scaling(_rate(raw_1), _rate(raw_n))
    per_worker = [w["msg_s"] for w in k2_n["per_worker"]]
    return {
        "name": "ingest_workers",
        "value": round(k2_scale, 3),
        "unit": f"x ({workers} workers / 1)",
        "baseline": round(raw_scale, 3),
        "baseline_label": (
            f"raw confluent-kafka group consumers + K2 decode (no storage), "
            f"{workers} processes / 1, same backlog and same measure"
        ),
        "ratio": round(k2_scale / raw_scale, 3) if raw_scale > 0 else 0.0,
        "value_label": (
            f"k2 ingest, full stages, {workers} processes in one consumer group / 1, "
            "msg/s from the first assignment to the table complete"
        ),
        "workers": workers,
        "records": records,
        "partitions": parts,
        "symbols": SYMBOLS,
        "k2_1_worker_msg_s": k2_1["msg_s"],
        f"k2_{workers}_workers_msg_s": k2_n["msg_s"],
        f"k2_{workers}_workers_per_worker_msg_s": per_worker,
        "per_worker_msg_s": k2_1["msg_s"],
        "per_worker_label": "one k2 ingest process (full stages) with the group to itself",
        "raw_1_consumer_msg_s": raw_1["msg_s"],
        f"raw_{workers}_consumers_msg_s": raw_n["msg_s"],
        f"raw_{workers}_consumers_per_worker_msg_s": [w["msg_s"] for w in raw_n["per_worker"]],
        "join_wait_s": {
            "k2": [r["join_wait_s"] for r in runs if r["kind"] == "k2"],
            "raw": [r["join_wait_s"] for r in runs if r["kind"] == "raw"],
        },
        "complete": all(r.get("complete", True) for r in runs),
        "runs": runs,
        "publish_rate_msg_s": published["rate_msg_s"],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(),
        "wall_s": round(time.monotonic() - started, 1),
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "targets": {
            "scaling_min": SCALING_TARGET,
            "share_of_raw_scaling_min": RAW_SHARE_TARGET,
            "met": k2_scale >= SCALING_TARGET and k2_scale >= RAW_SHARE_TARGET * raw_scale,
        },
    }
