"""Redis state as a cache of the table: checked against it, rebuilt from it.

The dedup windows and the sequence state in Redis say what the table holds. They can fall
behind it (a crash between the Iceberg commit and the Redis write, another writer's commit)
or lose it (FLUSHALL, a failover, a restart from an older RDB file, a deleted data folder).
Either way ingest would store a trade twice or report a false gap, so Redis keeps a small
ledger, `{prefix}state`, and the table stays the truth:

- `epoch`: a uuid written when the state was (re)built. Missing = the state is gone;
- `p:{partition}`: the table sequence number through which that partition's rows are in
  Redis (dedup keys recorded, sequence state classified).

`TableStateSync.ensure()` runs at start and whenever the pipeline rewinds. It rebuilds a lost
state from the table (under a lock, so concurrent writers rebuild once) and otherwise
replays the rows committed after each owned partition's mark, oldest offset first, into
the deduplicator (keys recorded, and added to this process's Bloom filter) and the sequence
tracker (replaying a row it already saw labels it DUPLICATE and leaves the gaps alone).
`verify()` runs before every Iceberg commit: if the epoch changed or a mark went backwards
since this process synced, rows checked since then may have been checked against a lost
state, so the pipeline drops them and rewinds instead of committing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis as redis_py
from pyiceberg.table import Table

from k2lib.errors import ServiceError
from k2lib.ingestion import scripts
from k2lib.storage.changes import current_sequence_number, rows_added_since
from k2lib.wire.schema import TradeBatch

__all__ = ["Ledger", "LedgerView", "StateLedger", "TableStateSync"]

log = logging.getLogger("k2.ingest")

REBUILD_LOCK_S = 120.0
REBUILD_WAIT_S = 0.2
SYNC_BATCH_ROWS = 200_000

_ADVANCE = """
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
for i = 2, #ARGV - 1 do
  local p = 'p:' .. ARGV[i]
  local cur = tonumber(redis.call('HGET', KEYS[1], p) or '-1')
  if cur < tonumber(ARGV[#ARGV]) then redis.call('HSET', KEYS[1], p, ARGV[#ARGV]) end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class LedgerView:
    epoch: str | None
    marks: dict[int, int] = field(default_factory=dict)


class Ledger(Protocol):
    """The ledger's verbs (`StateLedger` on Redis; `k2lib.testing.MemoryStateLedger`)."""

    def read(self) -> LedgerView: ...
    def advance(
        self, partitions: Collection[int], sequence_number: int, *, epoch: str | None = None
    ) -> bool: ...
    def acquire_rebuild(self, owner: str) -> bool: ...
    def release_rebuild(self, owner: str) -> None: ...
    def wipe(self) -> int: ...
    def open_epoch(self, partitions: Collection[int], sequence_number: int) -> str: ...


class StateLedger:
    """The ledger hash and the rebuild lock, for the state under `prefixes`.

    Keys under `scripts.tagged(prefix)`: `state` (the hash) and `state-rebuild` (the lock),
    one slot on a Redis Cluster. The hash was `{prefix}state` before the state's keys were
    hash-tagged: a Redis holding only that old layout has no epoch here, so the first
    `ensure()` rebuilds the new layout from the table, and `wipe()` drops the old keys."""

    def __init__(
        self,
        client: redis_py.Redis | redis_py.RedisCluster,
        *,
        prefix: str,
        prefixes: Collection[str],
    ) -> None:
        self._client: Any = client
        base = scripts.tagged(prefix)
        self.key = f"{base}state"
        self._lock = f"{base}state-rebuild"
        self._legacy = f"{prefix}state"
        self._prefixes = tuple(prefixes)
        self._advance = client.register_script(_ADVANCE)

    def read(self) -> LedgerView:
        try:
            raw = self._client.hgetall(self.key)
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis state ledger: {exc}") from exc
        fields = {_text(k): _text(v) for k, v in raw.items()}
        marks = {int(k[2:]): int(v) for k, v in fields.items() if k.startswith("p:")}
        return LedgerView(fields.get("epoch"), marks)

    def advance(
        self, partitions: Collection[int], sequence_number: int, *, epoch: str | None = None
    ) -> bool:
        """Raise each partition's mark to `sequence_number` (never lowers one), only while
        the ledger holds `epoch`: a mark raised over a state that was lost meanwhile would
        claim rows the state no longer has. False when the epoch did not match."""
        if not partitions:
            return True
        try:
            done = self._advance(
                keys=[self.key], args=[epoch or "", *sorted(partitions), sequence_number]
            )
        except redis_py.RedisError as exc:
            raise ServiceError(f"Redis state ledger: {exc}") from exc
        return bool(done)

    def acquire_rebuild(self, owner: str) -> bool:
        return bool(self._client.set(self._lock, owner, nx=True, px=int(REBUILD_LOCK_S * 1000)))

    def release_rebuild(self, owner: str) -> None:
        if _text(self._client.get(self._lock) or b"") == owner:
            self._client.delete(self._lock)

    def wipe(self) -> int:
        """Delete every key of the state (not the lock): the start of a rebuild.

        On a Redis Cluster the prefixes are scanned on every primary (keys of an older
        layout may sit in any slot) and the deletes are split per slot."""
        doomed: list[bytes | str] = [self.key, self._legacy]
        for prefix in self._prefixes:
            doomed.extend(scripts.scan_prefix(self._client, prefix))
        doomed = [k for k in doomed if _text(k) != self._lock]
        return scripts.delete_keys(self._client, doomed)

    def open_epoch(self, partitions: Collection[int], sequence_number: int) -> str:
        epoch = uuid.uuid4().hex
        self.advance(partitions, sequence_number)
        self._client.hset(self.key, "epoch", epoch)
        return epoch


class Replayable(Protocol):
    """What a state holder must do with rows the table committed behind its back."""

    def replay_committed(self, batch: TradeBatch) -> None: ...


class TableStateSync:
    """Keeps the Redis state of `partitions` in step with `table` (see the module doc)."""

    def __init__(
        self,
        ledger: Ledger,
        table: Table,
        *,
        partitions: Collection[int],
        holders: Collection[Replayable],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ledger = ledger
        self.table = table
        self.partitions = sorted(partitions)
        self.holders = tuple(holders)
        self.clock = clock
        self.sleep = sleep
        self.epoch: str | None = None
        self.marks: dict[int, int] = {}
        self.rebuilds = 0
        self.replayed_rows = 0

    def ensure(self, *, seen: dict[int, int] | None = None) -> None:
        """Bring the state of our partitions up to the table's current snapshot.

        `seen`: marks through which this process already holds every key in memory (its
        Bloom filter); rows are replayed from the lower of that and Redis's mark."""
        view = self.ledger.read()
        if view.epoch is None:
            view = self._rebuild()
        target = current_sequence_number(self.table)
        since = {p: view.marks.get(p, 0) for p in self.partitions}
        if seen is not None:
            since = {p: min(since[p], seen.get(p, 0)) for p in self.partitions}
        lowest = min(since.values(), default=target)
        if lowest < target:
            # From the lowest mark for every partition: replaying a row twice is harmless
            # (a key recorded again, a DUPLICATE label), missing one is not.
            self._replay(rows_added_since(self.table, lowest, self.partitions))
            self.ledger.advance(self.partitions, target, epoch=view.epoch)
        self.epoch = view.epoch
        self.marks = dict.fromkeys(self.partitions, target)

    def committed(self, sequence_number: int) -> None:
        """Our own commit's rows are recorded: raise our partitions' marks (unless the state
        was lost meanwhile: then the next verify rewinds, and the sync repairs it)."""
        if self.ledger.advance(self.partitions, sequence_number, epoch=self.epoch):
            self.marks = dict.fromkeys(self.partitions, sequence_number)

    def verify(self) -> bool:
        """True when the state this process checked against is still the one in Redis."""
        view = self.ledger.read()
        if view.epoch != self.epoch:
            log.warning("Redis state epoch changed (%s -> %s)", self.epoch, view.epoch)
            return False
        behind = {p: m for p, m in self.marks.items() if view.marks.get(p, 0) < m}
        if behind:
            log.warning("Redis state went back for partitions %s", sorted(behind))
            return False
        return True

    def _rebuild(self) -> LedgerView:
        owner = uuid.uuid4().hex
        deadline = self.clock() + REBUILD_LOCK_S
        while not self.ledger.acquire_rebuild(owner):
            self.sleep(REBUILD_WAIT_S)  # another writer rebuilds: use its result
            view = self.ledger.read()
            if view.epoch is not None:
                return view
            if self.clock() > deadline:
                raise ServiceError("Redis state rebuild by another writer did not finish")
        try:
            view = self.ledger.read()
            if view.epoch is not None:
                return view
            self.rebuilds += 1
            wiped = self.ledger.wipe()
            target = current_sequence_number(self.table)
            if target:
                log.warning(
                    "Redis state lost (%d keys left): rebuilding it from table %s at sequence %d",
                    wiped,
                    self.table.name(),
                    target,
                )
            self._replay(rows_added_since(self.table, 0, self.partitions))
            epoch = self.ledger.open_epoch(self.partitions, target)
            return LedgerView(epoch, dict.fromkeys(self.partitions, target))
        finally:
            self.ledger.release_rebuild(owner)

    def _replay(self, rows: Any) -> None:
        for start in range(0, rows.num_rows, SYNC_BATCH_ROWS):
            batch = TradeBatch.from_arrow(rows.slice(start, SYNC_BATCH_ROWS))
            for holder in self.holders:
                holder.replay_committed(batch)
            self.replayed_rows += len(batch)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
