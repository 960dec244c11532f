"""Read the Iceberg side of a query: one pinned snapshot, pruned as early as possible.

The row filter on `exch_ts` prunes day partitions and data files by their column bounds;
the filter on `symbol` prunes Parquet row groups, because the writer sorts every file by
`exchange, symbol, exch_ts`. Pinning the snapshot id is what makes the seam exact: the
offsets recorded in that snapshot describe exactly the rows this scan can return.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import (
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    LessThan,
)
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from k2lib.errors import QueryError, StorageError
from k2lib.storage.table import SnapshotOffsets, latest_offsets
from k2lib.wire.schema import ARROW_SCHEMA

__all__ = ["IcebergReader", "PinnedSnapshot"]


@dataclass(frozen=True, slots=True)
class PinnedSnapshot:
    """The table as one query sees it: a snapshot, and the Kafka offsets it covers."""

    table: Table
    snapshot: Snapshot | None
    offsets: SnapshotOffsets  # from the newest ancestor that recorded offsets

    @property
    def snapshot_id(self) -> int | None:
        return self.snapshot.snapshot_id if self.snapshot is not None else None

    @property
    def committed_ms(self) -> int | None:
        return self.snapshot.timestamp_ms if self.snapshot is not None else None


class IcebergReader:
    """`pin()` the current snapshot, then `read(pinned, ...)` any number of times."""

    def __init__(self, catalog: Catalog, identifier: str) -> None:
        self.catalog = catalog
        self.identifier = identifier

    def pin(self) -> PinnedSnapshot:
        """Load the table fresh (another process commits to it) and pin its current snapshot."""
        try:
            table = self.catalog.load_table(self.identifier)
        except NoSuchTableError as exc:
            raise QueryError(f"table {self.identifier!r} does not exist") from exc
        except Exception as exc:
            raise StorageError(f"cannot load table {self.identifier!r}: {exc}") from exc
        # Compaction and expiry commit snapshots that record no offsets but keep the rows,
        # so the newest ancestor that recorded offsets still describes this snapshot.
        return PinnedSnapshot(table, table.current_snapshot(), latest_offsets(table))

    def read(
        self,
        pinned: PinnedSnapshot,
        symbols: Collection[str],
        exchange: str | None,
        start_us: int,
        end_us: int,
    ) -> pa.Table:
        """Rows of `pinned` for the symbols in [start_us, end_us), in ARROW_SCHEMA."""
        if pinned.snapshot is None:
            return ARROW_SCHEMA.empty_table()
        scan = pinned.table.scan(
            row_filter=row_filter(symbols, exchange, start_us, end_us),
            selected_fields=tuple(ARROW_SCHEMA.names),
            snapshot_id=pinned.snapshot.snapshot_id,
        )
        try:
            return scan.to_arrow()
        except Exception as exc:
            raise StorageError(f"Iceberg read of {self.identifier!r} failed: {exc}") from exc


def row_filter(
    symbols: Collection[str], exchange: str | None, start_us: int, end_us: int
) -> BooleanExpression:
    """The pushed-down predicate: integers bind to Iceberg's timestamptz as microseconds."""
    names = sorted(symbols)
    one = len(names) == 1
    by_symbol = _pred(EqualTo, "symbol", names[0]) if one else _pred(In, "symbol", names)
    expr = And(by_symbol, _pred(GreaterThanOrEqual, "exch_ts", start_us))
    expr = And(expr, _pred(LessThan, "exch_ts", end_us))
    if exchange is not None:
        expr = And(_pred(EqualTo, "exchange", exchange), expr)
    return expr


def _pred(kind: type[Any], column: str, value: Any) -> BooleanExpression:
    # pyiceberg's predicates are pydantic models whose generated signatures confuse mypy.
    return cast(BooleanExpression, kind(column, value))
