"""Storage: the Iceberg table `market.trades`, its compare-and-set writer, what it holds.

- `table`: the schema, partitioning and the Kafka offsets each snapshot records;
- `writer.IcebergWriter`: one append per commit, landing only if the table still records
  what the writer started from (a second writer is fenced);
- `changes`: the rows committed after a sequence number (what Redis state is rebuilt from);
- `maintenance`: snapshot expiry (and, with it, the other upkeep of the table).
"""

from k2lib.storage.changes import current_sequence_number, rows_added_since
from k2lib.storage.table import (
    SnapshotOffsets,
    ensure_table,
    held_mask,
    latest_offsets,
    stored_keys,
)
from k2lib.storage.writer import CommitResult, IcebergWriter

__all__ = [
    "CommitResult",
    "IcebergWriter",
    "SnapshotOffsets",
    "current_sequence_number",
    "ensure_table",
    "held_mask",
    "latest_offsets",
    "rows_added_since",
    "stored_keys",
]
