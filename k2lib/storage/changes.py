"""What the table added after a sequence number: the rows Redis state is rebuilt from.

Every Iceberg snapshot has a sequence number, and every live data file carries the number
of the snapshot that added its rows (kept when manifests are merged; a compaction's new
files carry its own, so a sync after one replays the rewritten rows: harmless, only time).
So "the rows committed after sequence number s" is exact, including rows backfilled from
the spill, whose Kafka offsets are older than the snapshot that stored them.
"""

from __future__ import annotations

from collections.abc import Collection

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.table import Table

from k2lib.wire.schema import ARROW_SCHEMA, conform

__all__ = ["current_sequence_number", "rows_added_since"]


def current_sequence_number(table: Table) -> int:
    """The sequence number of the current snapshot (0 for an empty table)."""
    snap = table.current_snapshot()
    return int(snap.sequence_number or 0) if snap is not None else 0


def rows_added_since(
    table: Table, since: int, partitions: Collection[int] | None = None
) -> pa.Table:
    """Live rows whose data sequence number is above `since` (of Kafka `partitions`, or all),
    ordered by Kafka partition and offset: the order the feed delivered them in."""
    snap = table.current_snapshot()
    parts: list[pa.Table] = []
    if snap is not None:
        for manifest in snap.manifests(table.io):
            if (manifest.sequence_number or 0) <= since:
                continue  # written at or before `since`: holds no newer entry
            for entry in manifest.fetch_manifest_entry(io=table.io, discard_deleted=True):
                if (entry.sequence_number or 0) <= since:
                    continue
                with table.io.new_input(entry.data_file.file_path).open() as f:
                    parts.append(conform(pq.read_table(f)))
    if not parts:
        return ARROW_SCHEMA.empty_table()
    rows = pa.concat_tables(parts)
    if partitions is not None:
        wanted = pa.array(sorted(partitions), pa.int32())
        rows = rows.filter(pc.is_in(rows.column("kafka_partition"), value_set=wanted))
    return rows.sort_by([("kafka_partition", "ascending"), ("kafka_offset", "ascending")])
