"""The on-disk spill for deferred records: where it lives, how it is written, how it is read.

Shed records (and records held while Redis is out) are deferred, never lost. The ingest
process owns one spill per topic and table, `spill_directory(settings)`, which is
`$K2_HOME/spill/<topic>/<table>/`: a run on another `K2_TABLE` has its own spill, so it
cannot backfill another table's records (or ack their files).

Each `append` writes one Arrow IPC stream file in `ARROW_SCHEMA`: written to `*.tmp`,
fsync'd, renamed into place and the directory fsync'd. A crash therefore leaves a whole
file or none, and the next process sees every pending file. Names are `<seq>-<rows>.arrows`,
so counting pending rows after a restart reads no data.

A file that cannot be read back whole (truncated, garbage bytes, another schema, fewer rows
than its name says) would otherwise stop ingest at every restart. `drain` moves it to
`quarantine/` beside the pending files (atomically, fsync'd), counts it in
`k2_spill_quarantined_files_total` and logs a warning with its path and the reason. Its
records are not in the table; the file is kept there for recovery by hand, and is not
counted by `pending_rows`. `read_spill` is the read-only reader for queries: it skips a
corrupt file with a warning and never moves anything, because the ingest process owns the
directory.

Delivery is at-least-once: a crash between the caller's Iceberg commit and `ack` replays
that file. Run backfilled rows through the deduplicator, or record the acked tokens in the
commit's snapshot properties and `ack` them again on start, to make it exactly-once.
One process owns a spill directory at a time (the ingest process).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Collection, Iterator
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter

from k2lib.config import K2Settings
from k2lib.errors import ConfigError, ValidationError
from k2lib.wire.schema import ARROW_SCHEMA

__all__ = [
    "QUARANTINE",
    "SUFFIX",
    "DeferredSpill",
    "SpillToken",
    "read_spill",
    "spill_directory",
]

log = logging.getLogger(__name__)

SpillToken = str
SUFFIX = ".arrows"
QUARANTINE = "quarantine"  # the subfolder corrupt files are moved to
_NAME = re.compile(rf"^(\d{{12}})-(\d+){re.escape(SUFFIX)}$")
# read_spill warns once per corrupt file version, not on each of a query's two reads.
_WARNED_LIMIT = 1024
_warned: set[tuple[str, int, int]] = set()
_warned_lock = threading.Lock()


def spill_directory(settings: K2Settings) -> Path:
    """The spill of `settings.topic` ingested into `settings.table`."""
    return settings.home / "spill" / _path_part(settings.topic) / _path_part(settings.table)


def _path_part(name: str) -> str:
    # Kafka topic names and `namespace.table` pass unchanged; anything else is
    # percent-encoded, which is reversible, so two names never share a folder.
    if not name:
        raise ConfigError("an empty topic or table name cannot name a spill folder")
    part = quote(name, safe="")
    return part.replace(".", "%2E") if part in {".", ".."} else part


def _load(path: Path, rows: int) -> pa.Table | str:
    """The whole table of spill file `path`, or why it is corrupt. FileNotFoundError
    propagates: a file that is gone was acked, not corrupted."""
    try:
        with pa.OSFile(str(path)) as source:
            table = pa.ipc.open_stream(source).read_all()
        # The IPC reader does not check buffers against offsets; garbage that parses must
        # not reach the compute kernels.
        table.validate(full=True)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:  # truncated mid-message: OSError
        return f"unreadable: {exc}"
    if not table.schema.equals(ARROW_SCHEMA):
        return f"schema is not the trade schema: {table.schema.names}"
    if table.num_rows != rows:  # a stream cut at a message boundary reads as a shorter one
        return f"holds {table.num_rows} rows, its name says {rows}"
    return table


def _spill_names(directory: Path) -> list[tuple[SpillToken, int]]:
    """(name, rows) of the spill files in `directory`, oldest first."""
    out = []
    for path in sorted(directory.iterdir()):
        match = _NAME.match(path.name)
        if match:
            out.append((path.name, int(match.group(2))))
    return out


def read_spill(
    directory: Path, *, skip: Collection[SpillToken] = ()
) -> Iterator[tuple[SpillToken, pa.Table]]:
    """Read-only, lock-free: every intact spill file in `directory` not in `skip`, oldest
    first. A file acked meanwhile is left out (its rows are committed); a corrupt one is
    left out with a warning and left in place, for the ingest process to quarantine."""
    if not directory.is_dir():
        return
    for token, rows in _spill_names(directory):
        if token in skip:
            continue
        path = directory / token
        try:
            loaded = _load(path, rows)
            if isinstance(loaded, str):
                stat = path.stat()
                _warn_once(path, stat.st_size, stat.st_mtime_ns, loaded, rows)
                continue
        except FileNotFoundError:
            continue
        yield token, loaded


def _warn_once(path: Path, size: int, mtime_ns: int, reason: str, rows: int) -> None:
    key = (str(path), size, mtime_ns)
    with _warned_lock:  # queries run on several threads
        if key in _warned:
            return
        if len(_warned) >= _WARNED_LIMIT:
            _warned.clear()
        _warned.add(key)
    log.warning(
        "spill file %s is corrupt (%s): its %d rows are left out of query answers; "
        "ingest moves it to %s/ on its next backfill",
        path,
        reason,
        rows,
        path.parent / QUARANTINE,
    )


class DeferredSpill:
    """`append` deferred tables; later `drain` them, commit them, and `ack` each token."""

    def __init__(self, directory: str | Path, *, registry: CollectorRegistry | None = None) -> None:
        """`registry`: where `k2_spill_quarantined_files_total` is counted (none if None)."""
        self.directory = Path(directory)
        self.quarantine = self.directory / QUARANTINE
        self.directory.mkdir(parents=True, exist_ok=True)
        self._quarantined = _quarantine_counter(registry) if registry is not None else None
        self._lock = threading.Lock()
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink()  # an append that crashed before its rename: never visible
        # token -> rows, in append order
        self._files: dict[SpillToken, int] = dict(_spill_names(self.directory))
        self._in_flight: set[SpillToken] = set()
        # Quarantined names count too: a new file must never take the name of one there.
        kept = _spill_names(self.quarantine) if self.quarantine.is_dir() else []
        last = max((int(t[:12]) for t in [*self._files, *(t for t, _ in kept)]), default=0)
        self._next_seq = last + 1
        self._warn_about_the_per_topic_layout()

    def append(self, table: pa.Table) -> SpillToken | None:
        """Store `table` (in ARROW_SCHEMA) durably; returns its token, or None if empty."""
        if table.num_rows == 0:
            return None
        if not table.schema.equals(ARROW_SCHEMA):
            # Refused before writing: drain would quarantine such a file.
            raise ValidationError(f"spill tables must be in the trade schema, got {table.schema}")
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
            _fsync_dir(self.directory)
            self._files[token] = table.num_rows
            return token

    def pending_rows(self) -> int:
        """Rows appended and not yet acked (including ones drained but not acked). Rows of
        quarantined files are not pending: they will not be backfilled."""
        with self._lock:
            return sum(self._files.values())

    def pending_files(self) -> int:
        with self._lock:
            return len(self._files)

    def drain(self, max_rows: int) -> Iterator[tuple[SpillToken, pa.Table]]:
        """Oldest first, until about `max_rows` rows (always at least one file, so a file
        bigger than `max_rows` cannot block the spill). Files already handed out and not
        yet acked or released are skipped; corrupt ones are quarantined and skipped."""
        given = 0
        while given < max_rows:
            with self._lock:
                token = next((t for t in self._files if t not in self._in_flight), None)
                if token is None:
                    return
                self._in_flight.add(token)
                rows = self._files[token]
            try:
                loaded = _load(self.directory / token, rows)
            except FileNotFoundError:
                self._forget(token)
                log.warning("spill file %s vanished before it was backfilled", token)
                continue
            if isinstance(loaded, str):
                self._quarantine_file(token, rows, loaded)
                continue
            given += loaded.num_rows
            yield token, loaded

    def ack(self, token: SpillToken) -> None:
        """The rows of `token` are committed: delete the file. Acking twice is harmless."""
        with self._lock:
            self._in_flight.discard(token)
            if self._files.pop(token, None) is None:
                return
            (self.directory / token).unlink(missing_ok=True)
            _fsync_dir(self.directory)

    def age_s(self, token: SpillToken, now: float | None = None) -> float:
        """Seconds since `token` was written (its file's mtime; 0 if it is gone)."""
        try:
            written = (self.directory / token).stat().st_mtime
        except FileNotFoundError:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - written)

    def release(self, token: SpillToken) -> None:
        """The caller could not commit `token`'s rows; hand them out again on the next drain."""
        with self._lock:
            self._in_flight.discard(token)

    def _forget(self, token: SpillToken) -> None:
        with self._lock:
            self._in_flight.discard(token)
            self._files.pop(token, None)

    def _quarantine_file(self, token: SpillToken, rows: int, reason: str) -> None:
        # Forgotten first either way: a file that cannot be moved must not stop the drain
        # (it is retried after a restart).
        self._forget(token)
        source, target = self.directory / token, self.quarantine / token
        try:
            with self._lock:
                if not self.quarantine.is_dir():
                    self.quarantine.mkdir()
                    _fsync_dir(self.directory)
                n = 0
                while target.exists():  # never overwrite kept records
                    n += 1
                    target = self.quarantine / f"{token}.{n}"
                os.replace(source, target)
                _fsync_dir(self.quarantine)
                _fsync_dir(self.directory)
        except OSError as exc:
            log.error(
                "spill file %s is corrupt (%s) and could not be moved to %s: %s; "
                "skipped until the next start",
                source,
                reason,
                self.quarantine,
                exc,
            )
            return
        if self._quarantined is not None:
            self._quarantined.inc()
        log.warning(
            "spill file %s is corrupt (%s): quarantined as %s. Its records (%d by its name) "
            "are not in the table and will not be backfilled; the file is kept there",
            source,
            reason,
            target,
            rows,
        )

    def _warn_about_the_per_topic_layout(self) -> None:
        # Before the spill was per table it lived one level up, in spill/<topic>/. Those
        # files' table is unknown, so they are not backfilled here; say where they are.
        parent = self.directory.parent
        old = _spill_names(parent) if parent.is_dir() else []
        if old:
            log.warning(
                "%d spill files (%d rows) in %s are in the old per-topic layout and are not "
                "backfilled; move them into %s if they belong to this table",
                len(old),
                sum(rows for _, rows in old),
                parent,
                self.directory,
            )


_counters: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()
_counters_lock = threading.Lock()


def _quarantine_counter(registry: CollectorRegistry) -> Counter:
    # One counter per registry, shared by every spill on it (a registry refuses a second).
    with _counters_lock:
        counter = _counters.get(registry)
        if counter is None:
            counter = _counters[registry] = Counter(
                "k2_spill_quarantined_files",
                "Corrupt spill files moved to quarantine (their records are not backfilled)",
                registry=registry,
            )
        return counter


def _fsync_dir(directory: Path) -> None:
    # A rename or unlink is durable only once the directory entry itself is on disk.
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
