"""Micro-batch Iceberg writer: one append per commit, with the Kafka offsets it covers.

The rows and the offsets land in one atomic snapshot. That is the whole effectively-once
argument: after a crash the consumer resumes from the offsets of the last snapshot, so a
record is either in the table and behind the resume point, or in neither.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from k2lib.errors import DiskFullError, StorageError
from k2lib.storage.table import offsets_properties
from k2lib.wire.schema import TradeBatch

__all__ = ["CommitResult", "IcebergWriter", "storage_order"]

log = logging.getLogger("k2.storage")

COMMIT_RETRIES = 5


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


class IcebergWriter:
    def __init__(
        self,
        table: Table,
        topic: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        delay_s: Callable[[], float] | None = None,
    ) -> None:
        self.table = table
        self.topic = topic
        self.clock = clock
        # A chaos hook: extra seconds to stall each commit (a slow object store).
        self.delay_s = delay_s
        self.commits = 0
        self.topic_id: str | None = None

    def commit(
        self,
        batch: TradeBatch,
        offsets: Mapping[int, int],
        extra_properties: Mapping[str, str] | None = None,
    ) -> CommitResult:
        """Append `batch` (may be empty) and record `offsets` in the same snapshot."""
        started = self.clock()
        if self.delay_s is not None and (delay := self.delay_s()) > 0:
            time.sleep(delay)
        props = {
            **offsets_properties(self.topic, offsets, self.topic_id),
            **(extra_properties or {}),
        }
        data = storage_order(batch).to_arrow()
        last_exc: Exception | None = None
        for attempt in range(COMMIT_RETRIES):
            try:
                self.table.append(data, snapshot_properties=props)
                break
            except CommitFailedException as exc:  # another writer won the race: refresh
                last_exc = exc
                log.warning("commit conflict (attempt %d): %s", attempt + 1, exc)
                self.table.refresh()
            except OSError as exc:
                if exc.errno == errno.ENOSPC or "No space left" in str(exc):
                    raise DiskFullError(
                        f"no space left under the warehouse ({exc}); no snapshot was written "
                        "and nothing is lost: free space and run again"
                    ) from exc
                raise StorageError(f"Iceberg commit failed: {exc}") from exc
        else:
            raise StorageError(f"Iceberg commit failed after {COMMIT_RETRIES} tries: {last_exc}")
        self.commits += 1
        snap = self.table.current_snapshot()
        return CommitResult(snap.snapshot_id if snap else None, len(batch), self.clock() - started)
