"""Table maintenance: snapshot expiry (manifest merge is a table property; see table.py).

Expiry keeps the newest snapshots, and always the newest one that recorded offsets, so
the resume point and recent time travel survive.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyiceberg.table import Table

from k2lib.storage.table import latest_offsets

__all__ = ["MaintenanceConfig", "expire_snapshots", "table_stats"]

log = logging.getLogger("k2.storage")


@dataclass(frozen=True, kw_only=True)
class MaintenanceConfig:
    every_commits: int = 20
    keep_snapshots: int = 10


def expire_snapshots(table: Table, keep: int) -> int:
    """Expire all but the newest `keep` snapshots (and the resume snapshot). Returns count."""
    table.refresh()
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    protect = {s.snapshot_id for s in snapshots[-keep:]}
    resume = latest_offsets(table).snapshot_id
    if resume is not None:
        protect.add(resume)
    current = table.current_snapshot()
    if current is not None:
        protect.add(current.snapshot_id)
    doomed = [s.snapshot_id for s in snapshots if s.snapshot_id not in protect]
    if doomed:
        table.maintenance.expire_snapshots().by_ids(doomed).commit()
        log.info("expired %d snapshots", len(doomed))
    return len(doomed)


def table_stats(table: Table) -> dict[str, int]:
    """Rows, data files and bytes of the current snapshot."""
    files = table.inspect.files()
    return {
        "rows": int(sum(files.column("record_count").to_pylist())) if files.num_rows else 0,
        "data_files": files.num_rows,
        "bytes": int(sum(files.column("file_size_in_bytes").to_pylist())) if files.num_rows else 0,
        "snapshots": len(table.snapshots()),
    }
