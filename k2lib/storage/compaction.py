"""Data-file compaction: a day partition's small files rewritten into large ones, live.

Every micro-batch commit adds a file per day it touches, so a day ingested at a 0.1 s
commit interval holds thousands of small files, and a query opens each one's footer.
pyiceberg has no rewrite action, so this module does what Iceberg's `RewriteDataFiles`
does, with pyiceberg's own parts:

- plan: the current snapshot's live data files of a day whose size is under
  `small_fraction` of the target, packed in bins of about `target_bytes` on disk;
- rewrite: each bin read back (`ArrowScan`), sorted by the table's sort order
  (exchange, symbol, exch_ts; then seq, so the layout is deterministic) and written
  as one new Parquet file (`_dataframe_to_data_files`);
- commit: one transaction: an overwrite snapshot that deletes exactly the files read
  and adds the new ones, then an empty append that drops the manifest of deleted
  entries from the manifest list (so queries do not plan through it). Both carry the
  `k2.*` summary properties of the snapshot that recorded the table's offsets
  (ADR 014), so resume, the writer's compare-and-set and the hybrid seam read the same
  position before and after.

Writers keep committing meanwhile. The table's `commit.retry.num-retries` is 0 (table.py),
so a commit that lost the race raises `CommitFailedException`: the table is refreshed and
the same rewritten files are committed on top of the new snapshot, with that snapshot's
K2 properties, as long as every file read is still live. If one is gone (another
compaction rewrote it) the rewrite is abandoned: its files are deleted and nothing is
committed. A commit whose outcome is unknown (an I/O error, a locked SQLite catalog) is
looked up in the refreshed table before it is tried again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table, TableProperties
from sqlalchemy.exc import OperationalError

from k2lib.errors import StorageError
from k2lib.storage.table import latest_offsets

__all__ = [
    "CompactionConfig",
    "CompactionResult",
    "DayCompaction",
    "compact",
    "k2_properties",
    "small_files",
]

log = logging.getLogger("k2.storage")

EPOCH = dt.date(1970, 1, 1)
SORT_KEYS = [
    ("exchange", "ascending"),
    ("symbol", "ascending"),
    ("exch_ts", "ascending"),
    ("seq", "ascending"),
]
K2_PREFIX = "k2."
RETRY_WAIT_S = 0.05


@dataclass(frozen=True, kw_only=True)
class CompactionConfig:
    """What counts as small, how large the rewritten files are, when a day is worth it."""

    target_bytes: int = 128 * 2**20  # on-disk size of a rewritten file
    min_files: int = 8  # a day is compacted once it holds this many small files
    small_fraction: float = 0.75  # a file under this share of the target is small
    conflict_retries: int = 20  # writers won the race: refresh and commit again
    transient_retries: int = 5  # I/O errors and a locked SQLite catalog

    def __post_init__(self) -> None:
        if self.target_bytes <= 0:
            raise ValueError("target_bytes must be positive")
        if self.min_files < 2:
            raise ValueError("min_files must be at least 2: one file rewritten gains nothing")
        if not 0 < self.small_fraction <= 1:
            raise ValueError("small_fraction must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class DayCompaction:
    """One day partition's rewrite. `outcome`: compacted, superseded or skipped."""

    day: dt.date
    outcome: str
    files_before: int = 0  # small files read (and deleted, when compacted)
    files_after: int = 0  # files written
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    attempts: int = 0
    snapshot_id: int | None = None


@dataclass(frozen=True, slots=True)
class CompactionResult:
    days: tuple[DayCompaction, ...]
    seconds: float
    table_files_before: int
    table_files_after: int

    def summary(self) -> dict[str, Any]:
        done = [d for d in self.days if d.outcome == "compacted"]
        return {
            "days": [d.day.isoformat() for d in done],
            "superseded_days": [d.day.isoformat() for d in self.days if d.outcome == "superseded"],
            "files_before": self.table_files_before,
            "files_after": self.table_files_after,
            "files_rewritten": sum(d.files_before for d in done),
            "files_written": sum(d.files_after for d in done),
            "rows": sum(d.rows for d in done),
            "bytes_before": sum(d.bytes_before for d in done),
            "bytes_after": sum(d.bytes_after for d in done),
            "attempts": sum(d.attempts for d in self.days),
            "seconds": round(self.seconds, 3),
        }


def small_files(table: Table, config: CompactionConfig) -> dict[dt.date, list[FileScanTask]]:
    """The current snapshot's small data files per day partition (files with delete files
    attached are left alone: rewriting them would orphan the deletes)."""
    limit = config.target_bytes * config.small_fraction
    spec_id = table.metadata.default_spec_id
    out: dict[dt.date, list[FileScanTask]] = {}
    for task in table.scan().plan_files():
        data = task.file
        if data.spec_id != spec_id or task.delete_files or data.file_size_in_bytes >= limit:
            continue
        out.setdefault(_day_of(data), []).append(task)
    return out


def compact(
    table: Table,
    config: CompactionConfig | None = None,
    *,
    day: dt.date | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
) -> CompactionResult:
    """Compact every day (or `day`) holding at least `min_files` small files."""
    cfg = config or CompactionConfig()
    say = progress or log.info
    started = clock()
    _transient(table.refresh, cfg, sleep)
    files_before = _live_count(table)
    planned = small_files(table, cfg)
    days = [day] if day is not None else sorted(planned)
    results = []
    for d in days:
        tasks = planned.get(d, [])
        if len(tasks) < cfg.min_files:
            say(f"{d}: {len(tasks)} small files (< {cfg.min_files}); nothing to do")
            continue
        results.append(_compact_day(table, d, tasks, cfg, sleep, say))
    return CompactionResult(
        days=tuple(results),
        seconds=clock() - started,
        table_files_before=files_before,
        table_files_after=_live_count(table),
    )


def k2_properties(table: Table) -> dict[str, str]:
    """The `k2.*` summary properties of the newest snapshot that recorded offsets: what a
    snapshot that changes no rows must carry so that it records the same position."""
    found = latest_offsets(table)
    snap = table.snapshot_by_id(found.snapshot_id) if found.snapshot_id is not None else None
    props = snap.summary.additional_properties if snap is not None and snap.summary else {}
    return {k: v for k, v in props.items() if k.startswith(K2_PREFIX)}


def _compact_day(
    table: Table,
    day: dt.date,
    tasks: list[FileScanTask],
    cfg: CompactionConfig,
    sleep: Callable[[float], None],
    say: Callable[[str], None],
) -> DayCompaction:
    bins = [b for b in _bins(tasks, cfg.target_bytes) if len(b) > 1]
    read = [t.file for b in bins for t in b]
    if not read:
        return DayCompaction(day=day, outcome="skipped")
    say(f"{day}: rewriting {len(read)} small files in {len(bins)} bins")
    written: list[DataFile] = []
    for i, group in enumerate(bins, 1):
        written.extend(_rewrite(table, group))
        say(f"{day}: bin {i}/{len(bins)} written ({len(group)} files)")
    rows = sum(f.record_count for f in written)
    if rows != sum(f.record_count for f in read):
        _delete_files(table, written)
        raise StorageError(f"compaction of {day} read and wrote different row counts")
    base = DayCompaction(
        day=day,
        outcome="compacted",
        files_before=len(read),
        files_after=len(written),
        rows=rows,
        bytes_before=sum(f.file_size_in_bytes for f in read),
        bytes_after=sum(f.file_size_in_bytes for f in written),
    )
    attempts, snapshot_id = _commit(table, day, read, written, cfg, sleep, say)
    if snapshot_id is None:
        return DayCompaction(day=day, outcome="superseded", attempts=attempts)
    say(f"{day}: {len(read)} files -> {len(written)} ({rows} rows) in {attempts} attempt(s)")
    return dataclasses.replace(base, attempts=attempts, snapshot_id=snapshot_id)


def _commit(
    table: Table,
    day: dt.date,
    read: Sequence[DataFile],
    written: Sequence[DataFile],
    cfg: CompactionConfig,
    sleep: Callable[[float], None],
    say: Callable[[str], None],
) -> tuple[int, int | None]:
    """Commit the rewrite; (attempts, snapshot id), or (attempts, None) when another
    compaction took the files first (the written files are then deleted)."""
    conflicts = transient = attempts = 0
    while True:
        attempts += 1
        live = _live_paths(table)
        if all(f.file_path in live for f in written):
            # An attempt whose reply was lost landed after all.
            current = table.current_snapshot()
            return attempts, current.snapshot_id if current is not None else None
        gone = [f.file_path for f in read if f.file_path not in live]
        if gone:
            say(f"{day}: {len(gone)} of the files read were rewritten meanwhile; giving up")
            _delete_files(table, written)
            return attempts, None
        props = k2_properties(table)
        try:
            with table.transaction() as txn:
                rewrite = txn.update_snapshot(snapshot_properties=props).overwrite()
                for f in read:
                    rewrite.delete_data_file(f)
                for f in written:
                    rewrite.append_data_file(f)
                rewrite.commit()
                # The overwrite's manifest list keeps a manifest of the deleted entries,
                # and every scan plans through it (2,000 entries cost a query ~220 ms here)
                # until the next append drops it. An empty append in the same transaction
                # drops it now; both snapshots record the same position.
                txn.update_snapshot(snapshot_properties=props).fast_append().commit()
            current = table.current_snapshot()
            return attempts, current.snapshot_id if current is not None else None
        except (CommitFailedException, ValidationException) as exc:
            # Lost the race to a writer (or, for a validation error, the refreshed snapshot
            # lost a file between the check above and the staging: the check then says so).
            conflicts += 1
            if conflicts > cfg.conflict_retries:
                _delete_files(table, written)
                raise StorageError(
                    f"compaction of {day} kept conflicting after {cfg.conflict_retries} tries"
                ) from exc
            log.info("compaction commit conflict, retrying on the new snapshot: %s", exc)
        except (OSError, OperationalError) as exc:
            transient += 1
            if transient > cfg.transient_retries:
                raise StorageError(f"compaction commit of {day} failed: {exc}") from exc
            log.warning("compaction commit failed (%s); checking whether it landed", exc)
            sleep(RETRY_WAIT_S * 2**transient)
        _transient(table.refresh, cfg, sleep)


def _rewrite(table: Table, group: Sequence[FileScanTask]) -> list[DataFile]:
    """One bin read, sorted and written as one file."""
    meta = table.metadata
    rows = ArrowScan(meta, table.io, meta.schema(), AlwaysTrue()).to_table(group)
    rows = rows.sort_by(SORT_KEYS)
    # pyiceberg splits by in-memory size; the bin is already sized on disk, so one file.
    whole = meta.model_copy(
        update={
            "properties": {
                **meta.properties,
                TableProperties.WRITE_TARGET_FILE_SIZE_BYTES: str(max(rows.nbytes, 1) * 2),
            }
        }
    )
    return list(_dataframe_to_data_files(whole, rows.combine_chunks(), table.io, uuid.uuid4()))


def _bins(tasks: Iterable[FileScanTask], target: int) -> list[list[FileScanTask]]:
    """First-fit in plan order: consecutive files up to `target` bytes on disk."""
    bins: list[list[FileScanTask]] = []
    size = 0
    for task in tasks:
        n = task.file.file_size_in_bytes
        if not bins or size + n > target:
            bins.append([])
            size = 0
        bins[-1].append(task)
        size += n
    return bins


def _day_of(data: DataFile) -> dt.date:
    return EPOCH + dt.timedelta(days=int(data.partition[0]))


def _live_paths(table: Table) -> set[str]:
    return {task.file.file_path for task in table.scan().plan_files()}


def _live_count(table: Table) -> int:
    return len(_live_paths(table)) if table.current_snapshot() is not None else 0


def _delete_files(table: Table, files: Iterable[DataFile]) -> None:
    for f in files:
        try:
            table.io.delete(f.file_path)
        except OSError as exc:  # an orphan file costs space, never correctness
            log.warning("could not delete unused compaction output %s: %s", f.file_path, exc)


def _transient(
    call: Callable[[], object], cfg: CompactionConfig, sleep: Callable[[float], None]
) -> None:
    for attempt in range(cfg.transient_retries):
        try:
            call()
            return
        except (OSError, OperationalError) as exc:
            if attempt == cfg.transient_retries - 1:
                raise StorageError(f"Iceberg catalog unreachable: {exc}") from exc
            sleep(RETRY_WAIT_S * 2**attempt)
