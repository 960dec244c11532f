"""Notebook 02: the Iceberg table. Snapshots with the Kafka offsets each commit recorded, time
travel, partition pruning, file sizes and maintenance.

`build_storage_demo` loads a seeded synthetic feed stamped 2024-08-08 23:55 UTC (the hour
of the real captures, so the data crosses midnight and lands in two day partitions) in
three rounds. Each round is a new ingest process that resumes from the offsets the previous
snapshot recorded, and ends with exactly one commit, so the snapshots are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pyiceberg.table.snapshots import Snapshot

from k2lib.demo.context import DemoContext
from k2lib.demo.workspace import Workspace, reset_workspace
from k2lib.feeds import SourceReport
from k2lib.feeds.publisher import replay
from k2lib.feeds.synthetic import SyntheticConfig, SyntheticFeed
from k2lib.ingestion.pipeline import IngestConfig, IngestPipeline
from k2lib.ingestion.stages import Stages
from k2lib.monitoring import new_registry
from k2lib.storage.maintenance import expire_snapshots, table_stats
from k2lib.storage.table import offsets_of
from k2lib.viz.widgets import TimeTravelControl
from k2lib.wire.schema import TradeBatch

__all__ = [
    "STORAGE_START",
    "StorageDemo",
    "build_storage_demo",
    "data_files",
    "partition_pruning",
    "run_maintenance",
    "snapshot_frame",
    "snapshot_lines",
    "time_travel",
    "time_travel_control",
]

STORAGE_START = datetime(2024, 8, 8, 23, 55, tzinfo=UTC)
ONE_COMMIT = IngestConfig(commit_rows=10**9, commit_interval_s=3600.0)
ROUND_IDLE_S = 20.0


class _OneBatch:
    """A feed of one prepared batch (one round of the load)."""

    def __init__(self, batch: TradeBatch, name: str) -> None:
        self.batch = batch
        self.name = name
        self.report = SourceReport(records=len(batch))

    def batches(self, chunk: int = 0) -> Iterator[TradeBatch]:
        yield self.batch


@dataclass
class StorageDemo:
    workspace: Workspace
    rounds: list[dict[str, Any]] = field(default_factory=list)
    snapshot_ids: list[int] = field(default_factory=list)  # in commit order, n = index + 1

    @property
    def table(self) -> Any:
        return self.workspace.table

    def number_of(self, snapshot_id: int) -> int | None:
        ids = self.snapshot_ids
        return ids.index(snapshot_id) + 1 if snapshot_id in ids else None

    def line(self) -> str:
        rows = [r["written"] for r in self.rounds]
        return (
            f"{len(self.rounds)} ingest runs, each resuming from the last snapshot's "
            f"offsets: {' + '.join(f'{n:,}' for n in rows)} = {sum(rows):,} rows"
        )


def build_storage_demo(
    ctx: DemoContext, *, rounds: int = 3, per_round: int = 10_000, seed: int = 5
) -> StorageDemo:
    ws = reset_workspace(ctx.settings, "storage")
    start_us = int(STORAGE_START.timestamp() * 1_000_000)
    feed = SyntheticFeed(SyntheticConfig(seed=seed, records=rounds * per_round, start_us=start_us))
    demo = StorageDemo(ws)
    for n, batch in enumerate(feed.batches(per_round), start=1):
        published = replay(_OneBatch(batch, f"round {n}"), ws.settings, seed=seed)
        pipeline = IngestPipeline.from_settings(
            ws.settings, config=ONE_COMMIT, registry=new_registry(), stages=Stages()
        )
        summary = pipeline.run(max_messages=published["published"], until_idle_s=ROUND_IDLE_S)
        demo.rounds.append(
            {
                "round": n,
                "published": published["published"],
                "written": summary["written"],
                "commits": summary["commits"],
            }
        )
        ws.table.refresh()
        snap = ws.table.current_snapshot()
        if snap is not None:
            demo.snapshot_ids.append(snap.snapshot_id)
    return demo


def _summary(snapshot: Snapshot) -> dict[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot.summary else {}


def snapshot_frame(demo: StorageDemo) -> pd.DataFrame:
    """One row per live snapshot: its number in this demo, rows added, total, offsets."""
    demo.table.refresh()
    rows = []
    for snap in sorted(demo.table.snapshots(), key=lambda s: s.timestamp_ms):
        props = _summary(snap)
        recorded = offsets_of(snap)
        rows.append(
            {
                "n": demo.number_of(snap.snapshot_id),
                "snapshot_id": snap.snapshot_id,
                "operation": snap.summary.operation.value if snap.summary else "",
                "added_rows": int(props.get("added-records", 0)),
                "total_rows": int(props.get("total-records", 0)),
                "data_files": int(props.get("total-data-files", 0)),
                "kafka_offsets": dict(sorted(recorded.offsets.items())),
                "committed_at": pd.Timestamp(snap.timestamp_ms, unit="ms", tz="UTC"),
            }
        )
    return pd.DataFrame(rows)


def snapshot_lines(demo: StorageDemo) -> list[str]:
    """The stable part of `snapshot_frame` (no ids, no wall-clock times)."""
    lines = []
    for r in snapshot_frame(demo).to_dict("records"):
        offsets = " ".join(f"p{p}:{o}" for p, o in dict(r["kafka_offsets"]).items())
        lines.append(
            f"snapshot #{r['n']}: {r['operation']} +{r['added_rows']:,} rows -> "
            f"{r['total_rows']:,} total, {r['data_files']} files; next Kafka offsets {offsets}"
        )
    return lines


def time_travel(demo: StorageDemo, n: int) -> str:
    """Read the table as of snapshot #n (a real scan, not the summary's count)."""
    if not 1 <= n <= len(demo.snapshot_ids):
        return f"snapshot #{n}: no such snapshot in this demo"
    snapshot_id = demo.snapshot_ids[n - 1]
    demo.table.refresh()
    if demo.table.snapshot_by_id(snapshot_id) is None:
        return f"snapshot #{n}: expired by maintenance, time travel to it is gone"
    scan = demo.table.scan(snapshot_id=snapshot_id, selected_fields=("seq",))
    return f"as of snapshot #{n}: {scan.to_arrow().num_rows:,} rows"


def time_travel_control(demo: StorageDemo) -> TimeTravelControl:
    """A slider over this demo's snapshots that reads the table as of each one."""
    return TimeTravelControl(lambda n: time_travel(demo, n), len(demo.snapshot_ids))


def partition_pruning(
    demo: StorageDemo, *, day: str = "2024-08-09", symbol: str = "BTCUSDT"
) -> dict[str, Any]:
    """Files the scan must open for one symbol on one day, against all files."""
    table = demo.table
    table.refresh()
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    end = start + pd.Timedelta(days=1)
    row_filter = (
        f"exch_ts >= '{start.isoformat()}' and exch_ts < '{end.isoformat()}' "
        f"and symbol == '{symbol}'"
    )
    all_files = list(table.scan().plan_files())
    planned = list(table.scan(row_filter=row_filter).plan_files())
    rows = table.scan(row_filter=row_filter, selected_fields=("seq",)).to_arrow().num_rows
    return {
        "day": day,
        "symbol": symbol,
        "files_planned": len(planned),
        "files_total": len(all_files),
        "rows": rows,
        "line": (
            f"{symbol} on {day}: {rows:,} rows; the scan opens {len(planned)} of "
            f"{len(all_files)} data files (the other day's partition is pruned)"
        ),
    }


def data_files(demo: StorageDemo) -> pd.DataFrame:
    """The current snapshot's data files: partition day, rows and bytes."""
    files = demo.table.inspect.files().to_pandas()
    if files.empty:
        return pd.DataFrame(columns=["file", "day", "rows", "bytes"])
    return (
        pd.DataFrame(
            {
                "file": [p.rsplit("/", 1)[-1][:12] + "..." for p in files["file_path"]],
                "day": [str(part.get("exch_day")) for part in files["partition"]],
                "rows": files["record_count"].astype(int),
                "bytes": files["file_size_in_bytes"].astype(int),
            }
        )
        .sort_values(["day", "rows"])
        .reset_index(drop=True)
    )


def run_maintenance(demo: StorageDemo, *, keep: int = 1) -> dict[str, Any]:
    """Expire all but the newest `keep` snapshots; the table's numbers before and after."""
    before = table_stats(demo.table)
    expired = expire_snapshots(demo.table, keep)
    demo.table.refresh()
    after = table_stats(demo.table)
    return {
        "expired": expired,
        "before": before,
        "after": after,
        "line": (
            f"expired {expired} snapshots: {before['snapshots']} -> "
            f"{after['snapshots']} kept; rows {after['rows']:,} and "
            f"{after['data_files']} data files unchanged"
        ),
    }
