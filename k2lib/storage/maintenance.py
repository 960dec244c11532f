"""Table maintenance: snapshot expiry and data-file compaction (manifest merge is a table
property; see table.py).

Expiry keeps the newest snapshots, and always the newest one that recorded offsets, so
the resume point and recent time travel survive. Compaction (compaction.py) rewrites a
day's small files while writers keep committing; its snapshot records the same offsets.
Both are optional work: `run_maintenance` skips them at degradation levels that say so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pyiceberg.table import Table

from k2lib.errors import StorageError
from k2lib.storage.compaction import CompactionConfig, CompactionResult, compact
from k2lib.storage.table import latest_offsets

__all__ = [
    "MaintenanceConfig",
    "MaintenanceRun",
    "expire_snapshots",
    "run_maintenance",
    "table_stats",
]

log = logging.getLogger("k2.storage")


@dataclass(frozen=True, kw_only=True)
class MaintenanceConfig:
    every_commits: int = 20  # snapshot expiry every this many commits (0: never)
    keep_snapshots: int = 10
    # Compaction every this many commits (0: never). At a 1 s commit interval that is
    # every ~3 minutes; a day is rewritten only once `compaction.min_files` small files
    # have landed in it.
    compact_every_commits: int = 200
    compaction: CompactionConfig = field(default_factory=CompactionConfig)


@dataclass(frozen=True, slots=True)
class MaintenanceRun:
    expired: int | None = None  # None: not due (or skipped)
    compaction: CompactionResult | None = None


def run_maintenance(
    table: Table, config: MaintenanceConfig, *, commits: int, skip_optional_work: bool
) -> MaintenanceRun:
    """The maintenance due after the `commits`-th commit of this process.

    Runs on the ingest thread between commits, so its own commits never race this
    process's writer; other writers' races are retried (compaction.py). A failed
    compaction costs nothing but the wait: it is logged and ingest goes on."""
    if skip_optional_work:
        return MaintenanceRun()
    expired = None
    if config.every_commits and commits % config.every_commits == 0:
        expired = expire_snapshots(table, config.keep_snapshots)
    compacted = None
    if config.compact_every_commits and commits % config.compact_every_commits == 0:
        try:
            compacted = compact(table, config.compaction)
        except StorageError as exc:
            log.warning("compaction skipped: %s", exc)
        else:
            if compacted.days:
                log.info("compaction: %s", compacted.summary())
    return MaintenanceRun(expired=expired, compaction=compacted)


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
