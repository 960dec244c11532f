"""The Iceberg table `market.trades`: its schema, partitioning and the offsets it records.

Each K2 commit writes into the snapshot summary the next Kafka offset of *every* partition
(`k2.kafka.offsets`, merged with what the previous snapshot recorded, so a writer that owns
some partitions never erases the others' positions), and per partition the number of the last
K2 commit made by that partition's owner (`k2.kafka.versions`). That summary is the seam:
ingest resumes from it after a crash, the hybrid query reads Kafka from it, and the writer's
compare-and-set (writer.py) checks the versions before it appends.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.expressions import (
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    LessThanOrEqual,
    Or,
)
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
    "COMMIT_ID_PROPERTY",
    "COMMIT_NUMBER_PROPERTY",
    "OFFSETS_PROPERTY",
    "SESSION",
    "TABLE_PROPERTIES",
    "TOPIC_PROPERTY",
    "TRADES_SCHEMA",
    "VERSIONS_PROPERTY",
    "SnapshotOffsets",
    "ensure_table",
    "held_mask",
    "latest_offsets",
    "offsets_of",
    "offsets_properties",
    "stored_keys",
]

OFFSETS_PROPERTY = "k2.kafka.offsets"
TOPIC_PROPERTY = "k2.kafka.topic"
TOPIC_ID_PROPERTY = "k2.kafka.topic_id"  # the broker's topic UUID: a wiped broker has a new one
VERSIONS_PROPERTY = "k2.kafka.versions"  # partition -> number of the last commit that owned it
COMMIT_NUMBER_PROPERTY = "k2.commit.number"  # 1, 2, 3... along the table's K2 commits
COMMIT_ID_PROPERTY = "k2.commit.id"  # a uuid per commit attempt: finds an ambiguous commit

SESSION = "session"
SESSION_DOC = (
    "which sequence session of the symbol the seq belongs to: 0 (or null, in rows written "
    "before the column) for the first, then the exch_ts of the record that began it"
)

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
    NestedField(11, SESSION, LongType(), required=False, doc=SESSION_DOC),
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
    # pyiceberg would otherwise re-apply a conflicting append on top of the new snapshot,
    # behind the offsets check: K2's writer retries itself, after comparing offsets.
    "commit.retry.num-retries": "0",
}


@dataclass(frozen=True, slots=True)
class SnapshotOffsets:
    """The Kafka position a snapshot covers: `next offset` per partition of `topic`."""

    snapshot_id: int | None
    topic: str | None
    offsets: Mapping[int, int]
    timestamp_ms: int | None = None
    topic_id: str | None = None
    versions: Mapping[int, int] = field(default_factory=dict)
    commit_number: int = 0
    commit_id: str | None = None
    sequence_number: int = 0

    @property
    def recorded(self) -> bool:
        return self.topic is not None

    def owned_versions(self, partitions: Iterable[int]) -> dict[int, int]:
        """The versions of `partitions` (0 where no commit owned one yet)."""
        return {p: int(self.versions.get(p, 0)) for p in partitions}


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
        offsets=_int_map(raw),
        timestamp_ms=snapshot.timestamp_ms,
        topic_id=props.get(TOPIC_ID_PROPERTY),
        versions=_int_map(props.get(VERSIONS_PROPERTY, "{}")),
        commit_number=int(props.get(COMMIT_NUMBER_PROPERTY, "0")),
        commit_id=props.get(COMMIT_ID_PROPERTY),
        sequence_number=int(snapshot.sequence_number or 0),
    )


def _int_map(raw: str) -> dict[int, int]:
    return {int(p): int(o) for p, o in json.loads(raw).items()}


def latest_offsets(table: Table) -> SnapshotOffsets:
    """Offsets of the newest snapshot that recorded any: a K2 commit, or a compaction, which
    copies those of the snapshot it rewrote (ADR 014); an expiry or a foreign append records
    none, and the walk goes on to its parent."""
    snapshot = table.current_snapshot()
    while snapshot is not None:
        found = offsets_of(snapshot)
        if found.recorded:
            return found
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return offsets_of(None)


def offsets_properties(
    topic: str,
    offsets: Mapping[int, int],
    topic_id: str | None = None,
    *,
    versions: Mapping[int, int] | None = None,
    commit_number: int | None = None,
    commit_id: str | None = None,
) -> dict[str, str]:
    """The snapshot properties a commit writes."""
    props = {TOPIC_PROPERTY: topic, OFFSETS_PROPERTY: _dump(offsets)}
    if topic_id:
        props[TOPIC_ID_PROPERTY] = topic_id
    if versions is not None:
        props[VERSIONS_PROPERTY] = _dump(versions)
    if commit_number is not None:
        props[COMMIT_NUMBER_PROPERTY] = str(commit_number)
    if commit_id is not None:
        props[COMMIT_ID_PROPERTY] = commit_id
    return props


def _dump(values: Mapping[int, int]) -> str:
    payload = {str(p): int(o) for p, o in sorted(values.items())}
    return json.dumps(payload, separators=(",", ":"))


def ensure_table(catalog: Catalog, identifier: str) -> Table:
    """Load `identifier`, creating it (and its namespace) only if missing. Idempotent.

    Loading first matters: `create_table` writes a metadata file before the catalog refuses a
    name that exists, so creating first would leave an orphan file per process start. A table
    made before a property was added to `TABLE_PROPERTIES` gets it set once, and one made
    before the `session` column gets that column (optional: its old rows read as null)."""
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
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
        except TableAlreadyExistsError:  # another process created it meanwhile
            table = catalog.load_table(identifier)
    if SESSION not in table.schema().column_names:
        with contextlib.suppress(CommitFailedException), table.update_schema() as update:
            update.add_column(SESSION, LongType(), doc=SESSION_DOC)
        table.refresh()
    missing = {
        k: v
        for k, v in TABLE_PROPERTIES.items()
        if k != "format-version" and table.properties.get(k) != v
    }
    if missing:
        # A concurrent start may set them first: then its commit stands.
        with contextlib.suppress(CommitFailedException), table.transaction() as txn:
            txn.set_properties(missing)
        table.refresh()
    return table


def held_mask(
    table: Table,
    exchange: list[str],
    symbol: list[str],
    seq: list[int],
    session: list[int] | None = None,
) -> np.ndarray:
    """bool per key: is `(exchange[i], symbol[i], session[i], seq[i])` in `table` now? An exact
    read of the truth (pruned by each key's symbol and seq range), for checks past the dedup
    horizon. `session` defaults to 0 for every key."""
    n = len(seq)
    if n == 0:
        return np.zeros(0, bool)
    key = ["exchange", "symbol", SESSION, "seq"]
    wanted = pa.table(
        {
            "exchange": pa.array(exchange, pa.large_string()),
            "symbol": pa.array(symbol, pa.large_string()),
            SESSION: pa.array([0] * n if session is None else session, pa.int64()),
            "seq": pa.array(seq, pa.int64()),
            "row": pa.array(np.arange(n), pa.int64()),
        }
    )
    ranges = wanted.group_by(["exchange", "symbol"]).aggregate([("seq", "min"), ("seq", "max")])
    columns = [ranges.column(c).to_pylist() for c in ("exchange", "symbol", "seq_min", "seq_max")]
    clauses = [_key_range(*k) for k in zip(*columns, strict=True)]
    row_filter = clauses[0] if len(clauses) == 1 else Or(*clauses)
    stored = _keys_table(table.scan(row_filter=row_filter, selected_fields=tuple(key)).to_arrow())
    found = wanted.join(stored.group_by(key).aggregate([]), keys=key, join_type="inner")
    mask = np.zeros(n, bool)
    mask[found.column("row").to_numpy()] = True
    return mask


def _keys_table(rows: pa.Table) -> pa.Table:
    """Key columns with their types fixed, and the session of rows older than it 0."""
    return pa.table(
        {
            "exchange": rows.column("exchange").cast(pa.large_string()),
            "symbol": rows.column("symbol").cast(pa.large_string()),
            SESSION: rows.column(SESSION).cast(pa.int64()).fill_null(0),
            "seq": rows.column("seq").cast(pa.int64()),
        }
    )


def _key_range(exchange: str, symbol: str, lo: int, hi: int) -> BooleanExpression:
    # pyiceberg's predicates take (column, literal); its pydantic fields read otherwise.
    return And(
        EqualTo("exchange", exchange),  # type: ignore[call-arg, arg-type]
        EqualTo("symbol", symbol),  # type: ignore[call-arg, arg-type]
        GreaterThanOrEqual("seq", lo),  # type: ignore[call-arg, arg-type]
        LessThanOrEqual("seq", hi),  # type: ignore[call-arg, arg-type]
    )


def stored_keys(table: Table) -> list[tuple[str, str, int, int]]:
    """Every `(exchange, symbol, session, seq)` in `table`, duplicates included: the read-back
    that exactly-once checks count."""
    cols = _keys_table(
        table.scan(selected_fields=("exchange", "symbol", SESSION, "seq")).to_arrow()
    )
    return list(zip(*(cols.column(c).to_pylist() for c in cols.column_names), strict=True))
