"""An append-only on-disk spill for shed records, so that shedding defers and never loses.

Each `append` writes one Arrow IPC stream file: written to `*.tmp`, fsync'd, renamed into
place and the directory fsync'd. A crash therefore leaves a whole file or none, and the
next process sees every pending file. Names are `<seq>-<rows>.arrows`, so counting pending
rows after a restart reads no data.

Delivery is at-least-once: a crash between the caller's Iceberg commit and `ack` replays
that file. Run backfilled rows through the deduplicator, or record the acked tokens in the
commit's snapshot properties and `ack` them again on start, to make it exactly-once.
One process owns a spill directory at a time (the ingest process).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

__all__ = ["DeferredSpill", "SpillToken"]

SpillToken = str
SUFFIX = ".arrows"
_NAME = re.compile(r"^(\d{12})-(\d+)\.arrows$")


class DeferredSpill:
    """`append` shed tables; later `drain` them, commit them, and `ack` each token."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._files: dict[SpillToken, int] = {}  # token -> rows, in append order
        self._in_flight: set[SpillToken] = set()
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink()  # an append that crashed before its rename: never visible
        for path in sorted(self.directory.iterdir()):
            match = _NAME.match(path.name)
            if match:
                self._files[path.name] = int(match.group(2))
        last = max((int(t[:12]) for t in self._files), default=0)
        self._next_seq = last + 1

    def append(self, table: pa.Table) -> SpillToken | None:
        """Store `table` durably; returns its token, or None for an empty table."""
        if table.num_rows == 0:
            return None
        with self._lock:
            token = f"{self._next_seq:012d}-{table.num_rows}{SUFFIX}"
            self._next_seq += 1
            tmp = self.directory / f"{token}.tmp"
            with open(tmp, "wb") as f:
                with pa.ipc.new_stream(f, table.schema) as writer:
                    writer.write_table(table)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / token)
            self._fsync_dir()
            self._files[token] = table.num_rows
            return token

    def pending_rows(self) -> int:
        """Rows appended and not yet acked (including ones drained but not acked)."""
        with self._lock:
            return sum(self._files.values())

    def pending_files(self) -> int:
        with self._lock:
            return len(self._files)

    def drain(self, max_rows: int) -> Iterator[tuple[SpillToken, pa.Table]]:
        """Oldest first, until about `max_rows` rows (always at least one file, so a file
        bigger than `max_rows` cannot block the spill). Files already handed out and not
        yet acked or released are skipped."""
        given = 0
        while given < max_rows:
            with self._lock:
                token = next((t for t in self._files if t not in self._in_flight), None)
                if token is None:
                    return
                self._in_flight.add(token)
            with pa.OSFile(str(self.directory / token)) as source:
                table = pa.ipc.open_stream(source).read_all()
            given += table.num_rows
            yield token, table

    def ack(self, token: SpillToken) -> None:
        """The rows of `token` are committed: delete the file. Acking twice is harmless."""
        with self._lock:
            self._in_flight.discard(token)
            if self._files.pop(token, None) is None:
                return
            (self.directory / token).unlink(missing_ok=True)
            self._fsync_dir()

    def release(self, token: SpillToken) -> None:
        """The caller could not commit `token`'s rows; hand them out again on the next drain."""
        with self._lock:
            self._in_flight.discard(token)

    def _fsync_dir(self) -> None:
        # The rename or unlink is durable only once the directory entry itself is on disk.
        if not hasattr(os, "O_DIRECTORY"):
            return
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
