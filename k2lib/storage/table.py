"""The Iceberg table `market.trades`: its schema, partitioning and the offsets it records.

Each K2 commit writes the next Kafka offset of every partition into the snapshot summary
(`k2.kafka.offsets`). That summary is the seam: ingest resumes from it after a crash, and
the hybrid query reads Kafka from it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    DecimalType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

__all__ = [
    "OFFSETS_PROPERTY",
    "TABLE_PROPERTIES",
    "TOPIC_PROPERTY",
    "TRADES_SCHEMA",
    "SnapshotOffsets",
    "ensure_table",
    "latest_offsets",
    "offsets_of",
    "offsets_properties",
    "stored_keys",
]

OFFSETS_PROPERTY = "k2.kafka.offsets"
TOPIC_PROPERTY = "k2.kafka.topic"
TOPIC_ID_PROPERTY = "k2.kafka.topic_id"  # the broker's topic UUID: a wiped broker has a new one

TRADES_SCHEMA = Schema(
    NestedField(1, "exchange", StringType(), required=True),
    NestedField(2, "symbol", StringType(), required=True),
    NestedField(3, "seq", LongType(), required=True),
    NestedField(4, "exch_ts", TimestamptzType(), required=True),
    NestedField(5, "recv_ts", TimestamptzType(), required=True),
    NestedField(6, "price", DecimalType(18, 8), required=True),
    NestedField(7, "qty", DecimalType(18, 8), required=True),
    NestedField(8, "side", StringType(), required=False),
    NestedField(9, "kafka_partition", IntegerType(), required=True),
    NestedField(10, "kafka_offset", LongType(), required=True),
    identifier_field_ids=[1, 2, 3],
)

PARTITION_SPEC = PartitionSpec(
    PartitionField(source_id=4, field_id=1000, transform=DayTransform(), name="exch_day")
)
# The writer sorts every batch this way, so Parquet row-group statistics prune by symbol.
SORT_ORDER = SortOrder(
    SortField(source_id=1, transform=IdentityTransform()),
    SortField(source_id=2, transform=IdentityTransform()),
    SortField(source_id=4, transform=IdentityTransform()),
)

TABLE_PROPERTIES = {
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "8",
    "write.parquet.compression-codec": "zstd",
    "write.parquet.row-group-limit": "16384",  # small groups: symbol stats prune finer
    "format-version": "2",
}


@dataclass(frozen=True, slots=True)
class SnapshotOffsets:
    """The Kafka position a snapshot covers: `next offset` per partition of `topic`."""

    snapshot_id: int | None
    topic: str | None
    offsets: Mapping[int, int]
    timestamp_ms: int | None = None
    topic_id: str | None = None

    @property
    def recorded(self) -> bool:
        return self.topic is not None


def offsets_of(snapshot: Snapshot | None) -> SnapshotOffsets:
    """Read the offsets a K2 commit recorded (empty when the snapshot has none)."""
    if snapshot is None:
        return SnapshotOffsets(snapshot_id=None, topic=None, offsets={})
    props = snapshot.summary.additional_properties if snapshot.summary else {}
    raw = props.get(OFFSETS_PROPERTY)
    if raw is None:
        return SnapshotOffsets(
            snapshot_id=snapshot.snapshot_id,
            topic=None,
            offsets={},
            timestamp_ms=snapshot.timestamp_ms,
        )
    return SnapshotOffsets(
        snapshot_id=snapshot.snapshot_id,
        topic=props.get(TOPIC_PROPERTY),
        offsets={int(p): int(o) for p, o in json.loads(raw).items()},
        timestamp_ms=snapshot.timestamp_ms,
        topic_id=props.get(TOPIC_ID_PROPERTY),
    )


def latest_offsets(table: Table) -> SnapshotOffsets:
    """Offsets of the newest snapshot that recorded any (maintenance snapshots record none)."""
    snapshot = table.current_snapshot()
    while snapshot is not None:
        found = offsets_of(snapshot)
        if found.recorded:
            return found
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return offsets_of(None)


def offsets_properties(
    topic: str, offsets: Mapping[int, int], topic_id: str | None = None
) -> dict[str, str]:
    """The snapshot properties a commit writes."""
    payload = {str(p): int(o) for p, o in sorted(offsets.items())}
    props = {TOPIC_PROPERTY: topic, OFFSETS_PROPERTY: json.dumps(payload, separators=(",", ":"))}
    if topic_id:
        props[TOPIC_ID_PROPERTY] = topic_id
    return props


def ensure_table(catalog: Catalog, identifier: str) -> Table:
    """Create `identifier` (and its namespace) if missing; return it. Idempotent."""
    namespace = identifier.rsplit(".", 1)[0]
    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace(namespace)
    try:
        return catalog.create_table(
            identifier,
            schema=TRADES_SCHEMA,
            partition_spec=PARTITION_SPEC,
            sort_order=SORT_ORDER,
            properties=TABLE_PROPERTIES,
        )
    except TableAlreadyExistsError:
        return catalog.load_table(identifier)


def stored_keys(table: Table) -> list[tuple[str, str, int]]:
    """Every `(exchange, symbol, seq)` in `table`, duplicates included: the read-back that
    exactly-once checks count."""
    cols = table.scan(selected_fields=("exchange", "symbol", "seq")).to_arrow()
    return list(
        zip(
            cols.column("exchange").to_pylist(),
            cols.column("symbol").to_pylist(),
            cols.column("seq").to_pylist(),
            strict=True,
        )
    )
