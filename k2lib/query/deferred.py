"""Records the ingest process shed under degradation: consumed (their offsets are behind the
seam), not yet in Iceberg, held in its DeferredSpill until the level falls. Without them a
hybrid answer would miss a shed tier for as long as the degradation lasts.

Read-only and lock-free, through `k2lib.resilience.spill.read_spill`, which owns the file
format and `spill_directory`: the spill is owned by the ingest process. Its files appear by
an atomic rename and disappear only after the commit that stored their rows, so a file that
vanishes between listing and reading is already in the table. A corrupt file is left out
with a warning (the ingest process quarantines it), never an error for the query. The
engine reads the spill before pinning the snapshot and again after (see execute.py), so a
record is in the spill read, or in the snapshot, or both (the dedup drops the second copy).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from k2lib.query.merge import SPILL, empty_result, filter_rows, tag_source
from k2lib.resilience.spill import read_spill

__all__ = ["DeferredRows", "read_deferred"]


@dataclass(frozen=True, slots=True)
class DeferredRows:
    rows: pa.Table  # RESULT_SCHEMA, source "spill", already filtered
    files: frozenset[str]


def read_deferred(
    directory: Path,
    symbols: Collection[str],
    exchange: str | None,
    start_us: int,
    end_us: int,
    *,
    skip: Collection[str] = (),
) -> DeferredRows:
    """Matching rows of every intact spill file not in `skip`."""
    tables, names = [], set()
    for name, table in read_spill(directory, skip=skip):
        names.add(name)
        rows = filter_rows(tag_source(table, SPILL), symbols, exchange, start_us, end_us)
        if rows.num_rows:
            tables.append(rows)
    rows = pa.concat_tables(tables) if tables else empty_result()
    return DeferredRows(rows, frozenset(names))
