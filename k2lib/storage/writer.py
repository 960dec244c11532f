"""Micro-batch Iceberg writer: one append per commit, compare-and-set on the Kafka offsets.

The rows and the offsets land in one atomic snapshot, and a snapshot lands only if the
table still records, for every partition this writer owns, the version it started from
(`k2.kafka.versions`: the number of the last commit made by that partition's owner). So:

- after a crash the consumer resumes from the offsets of the last snapshot: a record is
  either in the table and behind the resume point, or in neither;
- a second writer on the same partitions (two `k2 ingest` at once, a zombie after a
  rebalance) is fenced: `CommitFencedError`, nothing appended, and it rewinds to the table;
- a commit whose outcome is unknown (an I/O error, a lost reply from a remote catalog) is
  looked up by its commit id before it is tried again, so it never lands twice;
- every snapshot carries every partition's offset: the previous snapshot's map with this
  writer's partitions overlaid.

pyiceberg's own conflict retry is off (`commit.retry.num-retries = 0` in table.py): it would
re-apply the append on top of a newer snapshot without looking at the offsets.
"""

from __future__ import annotations

import errno
import logging
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from sqlalchemy.exc import OperationalError

from k2lib.errors import CommitFencedError, DiskFullError, StorageError
from k2lib.storage.table import (
    COMMIT_ID_PROPERTY,
    SnapshotOffsets,
    latest_offsets,
    offsets_properties,
)
from k2lib.wire.schema import TradeBatch

__all__ = ["CommitResult", "IcebergWriter", "storage_order"]

log = logging.getLogger("k2.storage")

CONFLICT_RETRIES = 20  # another writer on other partitions won the race: rebase and retry
TRANSIENT_RETRIES = 5  # I/O errors and a locked SQLite catalog
RETRY_WAIT_S = 0.05


def storage_order(batch: TradeBatch) -> TradeBatch:
    """Rows by exchange, symbol, exch_ts (the table's sort order; stable), so Parquet
    row-group statistics prune by symbol. A NumPy lexsort on the fixed-width columns costs
    about half of sorting the Arrow table by its string columns."""
    return batch.take(np.lexsort((batch.exch_ts, batch.symbol, batch.exchange)))


@dataclass(frozen=True, slots=True)
class CommitResult:
    snapshot_id: int | None
    rows: int
    seconds: float
    offsets: SnapshotOffsets


class IcebergWriter:
    """Appends for the Kafka `partitions` this writer owns. `expected` holds, per owned
    partition, the version the table must still record for a commit to land."""

    def __init__(
        self,
        table: Table,
        topic: str,
        *,
        partitions: Collection[int],
        topic_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        delay_s: Callable[[], float] | None = None,
    ) -> None:
        self.table = table
        self.topic = topic
        self.partitions = sorted(partitions)
        self.topic_id = topic_id
        self.clock = clock
        self.sleep = sleep
        # A chaos hook: extra seconds to stall each commit (a slow object store).
        self.delay_s = delay_s
        self.commits = 0
        self.expected: dict[int, int] = {}
        self.base = self.rebase()

    def rebase(self) -> SnapshotOffsets:
        """Read what the table records now and start from it (at start and after a fence)."""
        self._transient(self.table.refresh)
        self.base = latest_offsets(self.table)
        self.expected = self.base.owned_versions(self.partitions)
        return self.base

    def adopt(self, partitions: Collection[int]) -> SnapshotOffsets:
        """Take over `partitions` (a group assigned them) from what the table records now;
        the partitions already owned keep what this writer expects of them."""
        self._transient(self.table.refresh)
        current = latest_offsets(self.table)
        self.partitions = sorted(set(self.partitions) | set(partitions))
        self.expected.update(current.owned_versions(partitions))
        return current

    def release(self, partitions: Collection[int]) -> None:
        """Give up `partitions` (a group revoked them)."""
        gone = set(partitions)
        self.partitions = [p for p in self.partitions if p not in gone]
        for p in gone:
            self.expected.pop(p, None)

    def commit(
        self,
        batch: TradeBatch,
        offsets: Mapping[int, int],
        extra_properties: Mapping[str, str] | None = None,
    ) -> CommitResult:
        """Append `batch` (may be empty) and record `offsets` (next offset per owned
        partition) in the same snapshot, if the table still holds `base` for our partitions.

        Raises CommitFencedError (nothing appended) when another writer committed any of
        them first; the caller rewinds with `rebase()`."""
        started = self.clock()
        if self.delay_s is not None and (delay := self.delay_s()) > 0:
            time.sleep(delay)
        data = storage_order(batch).to_arrow()
        commit_id = uuid.uuid4().hex
        expected = dict(self.expected)
        transient = 0
        for _ in range(CONFLICT_RETRIES + TRANSIENT_RETRIES):
            current = latest_offsets(self.table)
            if current.owned_versions(self.partitions) != expected:
                raise CommitFencedError(
                    f"table {self.table.name()} moved on under this writer "
                    f"(partition versions {expected} -> "
                    f"{current.owned_versions(self.partitions)}): rewinding"
                )
            props = {**self._properties(current, offsets, commit_id), **(extra_properties or {})}
            try:
                self.table.append(data, snapshot_properties=props)
                break
            except CommitFailedException as exc:  # another writer won the race: re-check
                log.info("commit conflict, re-checking offsets: %s", exc)
                self._transient(self.table.refresh)
            except (OSError, OperationalError) as exc:
                _raise_if_disk_full(exc)
                transient += 1
                if transient > TRANSIENT_RETRIES:
                    raise StorageError(f"Iceberg commit failed: {exc}") from exc
                log.warning("commit failed (%s); checking whether it landed", exc)
                self.sleep(RETRY_WAIT_S * 2**transient)
                self._transient(self.table.refresh)
                if self._landed(commit_id):
                    break
        else:
            raise StorageError(f"Iceberg commit kept conflicting after {CONFLICT_RETRIES} tries")
        self.commits += 1
        self.base = latest_offsets(self.table)
        self.expected = self.base.owned_versions(self.partitions)
        return CommitResult(
            self.base.snapshot_id, len(batch), self.clock() - started, offsets=self.base
        )

    def _properties(
        self, current: SnapshotOffsets, offsets: Mapping[int, int], commit_id: str
    ) -> dict[str, str]:
        same_topic = current.topic == self.topic and (
            not current.topic_id or not self.topic_id or current.topic_id == self.topic_id
        )
        number = current.commit_number + 1
        merged = {**(current.offsets if same_topic else {}), **offsets}
        versions = {**(current.versions if same_topic else {})}
        versions.update(dict.fromkeys(self.partitions, number))
        return offsets_properties(
            self.topic,
            merged,
            self.topic_id,
            versions=versions,
            commit_number=number,
            commit_id=commit_id,
        )

    def _landed(self, commit_id: str) -> bool:
        for snap in self.table.snapshots():
            props = snap.summary.additional_properties if snap.summary else {}
            if props.get(COMMIT_ID_PROPERTY) == commit_id:
                return True
        return False

    def _transient(self, call: Callable[[], object]) -> None:
        """Run a catalog read, retrying a locked SQLite catalog or a passing I/O error."""
        for attempt in range(TRANSIENT_RETRIES):
            try:
                call()
                return
            except (OSError, OperationalError) as exc:
                _raise_if_disk_full(exc)
                if attempt == TRANSIENT_RETRIES - 1:
                    raise StorageError(f"Iceberg catalog unreachable: {exc}") from exc
                self.sleep(RETRY_WAIT_S * 2**attempt)


def _raise_if_disk_full(exc: Exception) -> None:
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left" in str(exc):
        raise DiskFullError(
            f"no space left under the warehouse ({exc}); no snapshot was written "
            "and nothing is lost: free space and run again"
        ) from exc
