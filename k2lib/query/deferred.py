"""Records the ingest process shed under degradation: consumed (their offsets are behind the
seam), not yet in Iceberg, held in its DeferredSpill until the level falls. Without them a
hybrid answer would miss a shed tier for as long as the degradation lasts.

Read-only and lock-free: the spill is owned by the ingest process. Its files appear by an
atomic rename and disappear only after the commit that stored their rows, so a file that
vanishes between listing and reading is already in the table. The engine reads the spill
before pinning the snapshot and again after (see execute.py), so a record is in the spill
read, or in the snapshot, or both (the dedup drops the second copy).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from k2lib.config import K2Settings
from k2lib.query.merge import SPILL, empty_result, filter_rows, tag_source

__all__ = ["DeferredRows", "read_deferred", "spill_directory"]

SUFFIX = ".arrows"  # k2lib.resilience.spill writes <seq>-<rows>.arrows


@dataclass(frozen=True, slots=True)
class DeferredRows:
    rows: pa.Table  # RESULT_SCHEMA, source "spill", already filtered
    files: frozenset[str]


def spill_directory(settings: K2Settings) -> Path:
    """Where the ingest process keeps its spill for `settings.topic`."""
    return settings.home / "spill" / settings.topic


def read_deferred(
    directory: Path,
    symbols: Collection[str],
    exchange: str | None,
    start_us: int,
    end_us: int,
    *,
    skip: Collection[str] = (),
) -> DeferredRows:
    """Matching rows of every spill file not in `skip`."""
    if not directory.is_dir():
        return DeferredRows(empty_result(), frozenset())
    tables, names = [], set()
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        if path.name in skip:
            continue
        try:
            with pa.OSFile(str(path)) as source:
                table = pa.ipc.open_stream(source).read_all()
        except FileNotFoundError:
            continue  # acked: its rows are committed
        names.add(path.name)
        rows = filter_rows(tag_source(table, SPILL), symbols, exchange, start_us, end_us)
        if rows.num_rows:
            tables.append(rows)
    rows = pa.concat_tables(tables) if tables else empty_result()
    return DeferredRows(rows, frozenset(names))
