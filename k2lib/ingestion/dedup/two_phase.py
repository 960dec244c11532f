"""Commit-aligned deduplication (ADR 008): check now, record once the rows are durable.

- `check(batch)` drops duplicates (within the batch, among keys not yet in Redis, and in Redis
  when the Bloom filter says "maybe": one read-only Lua call) and holds the new keys pending;
- `stage()` takes the pending keys for one Iceberg commit. They stay visible to `check` while
  that commit is in flight: the next poll overlaps the commit, and a duplicate in it must see
  the keys the commit is about to store;
- `record(staged)` writes them to Redis after that commit: one Lua call, bitmap spans;
- `restage(staged)` puts them back when the commit or Redis failed;
- `discard()` forgets every key not yet recorded, when the pipeline drops its buffer and
  rewinds to what the table records (a fenced commit, a Redis state rebuilt);
- `replay_committed(batch)` takes rows the table committed behind this process's back (its
  own commit before a crash, another writer's) into Redis and the Bloom filter
  (`k2lib.ingestion.state`).

A crash before `record` leaves nothing in Redis for rows the table lacks, and a feed
published again (new offsets, same keys) is dropped against Redis. Pending keys are checked
exactly in-process, so a duplicate arriving before its original is committed is caught too.

What it gives up against `Deduplicator.filter`: between check and record, a key is known
only to the process that checked it. Kafka keys records by symbol, so one key's records reach
one consumer; `record` counts keys another consumer had recorded first (`late_duplicates`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry

from k2lib.clock import Clock
from k2lib.ingestion.dedup.deduplicator import DedupConfig, Deduplicator
from k2lib.ingestion.dedup.keys import key_hash
from k2lib.ingestion.dedup.store import DedupStore, Mode
from k2lib.wire.schema import TradeBatch

__all__ = ["CommitAlignedDeduplicator", "StagedKeys"]


@dataclass(frozen=True)
class StagedKeys:
    """Keys that passed `check`, waiting for their rows' commit."""

    names: np.ndarray
    seqs: np.ndarray
    chunks: tuple[_Pending, ...] = ()
    """The in-flight chunks these keys came from (dropped from view once recorded)."""

    def __len__(self) -> int:
        return int(self.seqs.size)

    @classmethod
    def join(cls, chunks: list[_Pending]) -> StagedKeys:
        if not chunks:
            return cls(np.zeros(0, np.uint64), np.zeros(0, np.int64))
        return cls(
            np.concatenate([c.keys.names for c in chunks]),
            np.concatenate([c.keys.seqs for c in chunks]),
            tuple(chunks),
        )


class _Pending:
    """One batch's pending keys, with their hashes sorted for exact lookups by bisection."""

    def __init__(self, keys: StagedKeys) -> None:
        self.keys = keys
        hashes = key_hash(keys.names, keys.seqs)
        self.order = np.argsort(hashes)
        self.sorted = hashes[self.order]

    def holds(self, names: np.ndarray, seqs: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        out = np.zeros(hashes.size, bool)
        if not self.sorted.size:
            return out
        at = np.searchsorted(self.sorted, hashes)
        near = np.minimum(at, self.sorted.size - 1)
        for i in np.flatnonzero(self.sorted[near] == hashes).tolist():
            j = int(at[i])
            while j < self.sorted.size and self.sorted[j] == hashes[i]:  # a hash match is
                k = self.order[j]  # checked against the exact key
                if self.keys.names[k] == names[i] and self.keys.seqs[k] == seqs[i]:
                    out[i] = True
                    break
                j += 1
        return out


class CommitAlignedDeduplicator(Deduplicator):
    """`Deduplicator` split in two phases around the Iceberg commit (see the module doc)."""

    def __init__(
        self,
        store: DedupStore,
        *,
        config: DedupConfig | None = None,
        wall_clock: Clock = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(store, config=config, wall_clock=wall_clock, registry=registry)
        self._pending: list[_Pending] = []  # checked, not yet staged
        self._inflight: list[_Pending] = []  # staged for a commit, not yet recorded
        self._pending_lock = threading.Lock()

    def check(self, batch: TradeBatch) -> np.ndarray:
        """keep mask: False for duplicates. New keys become pending. No write to Redis."""
        n = len(batch)
        if n == 0:
            return np.ones(0, bool)
        names, seq, hashes = self._keys(batch)
        windows = self.bloom.live_windows()
        within, order = self._planner.within_batch(names, seq)
        maybe = np.zeros(n, bool)
        maybe[~within] = self.bloom.contains_batch(hashes[~within])
        pending_dup = self._pending_duplicates(names, seq, hashes, maybe)
        probes = maybe & ~pending_dup
        confirmed = np.zeros(n, bool)
        if probes.any():
            planned = self._planner.plan(
                batch.partition,
                batch.offset,
                names,
                seq,
                order=order,
                live=probes,
                maybe=probes,
                decided=np.zeros(n, bool),
                fresh=np.zeros(n, bool),
                windows=windows,
                ttl_s=self.config.ttl_s,
                mode=Mode.PROBE,
            )
            found = self._store.apply(planned.plan).found
            confirmed[planned.probe_rows[found]] = True
        keep = ~(within | pending_dup | confirmed)
        pending = _Pending(StagedKeys(names[keep], seq[keep]))
        with self._pending_lock:
            self._pending.append(pending)
        self.bloom.add_batch(hashes[keep], window=windows[0])
        false_positives = int(np.count_nonzero(probes)) - int(np.count_nonzero(confirmed))
        self._count(
            records=n,
            duplicates=n - int(np.count_nonzero(keep)),
            within_batch=int(np.count_nonzero(within)),
            pending_duplicates=int(np.count_nonzero(pending_dup)),
            confirmed=int(np.count_nonzero(confirmed)),
            false_positives=false_positives,
        )
        m = self._metrics
        m.records.inc(n)
        m.duplicates.inc(n - int(np.count_nonzero(keep)))
        m.confirmations.inc(int(np.count_nonzero(confirmed)))
        m.false_positives.inc(false_positives)
        return keep

    def stage(self) -> StagedKeys:
        """Take every pending key for the commit about to happen (still seen by `check`)."""
        with self._pending_lock:
            chunks, self._pending = self._pending, []
            self._inflight.extend(chunks)
        return StagedKeys.join(chunks)

    def restage(self, staged: StagedKeys) -> None:
        """The commit or `record` failed: keep the keys pending for the next commit."""
        with self._pending_lock:
            ids = {id(c) for c in staged.chunks}
            self._inflight = [c for c in self._inflight if id(c) not in ids]
            self._pending[:0] = list(staged.chunks)

    def discard(self) -> int:
        """Forget every key not yet recorded (the rows were dropped). -> keys forgotten."""
        with self._pending_lock:
            n = sum(len(c.keys) for c in self._pending + self._inflight)
            self._pending, self._inflight = [], []
        return n

    def record(self, staged: StagedKeys) -> int:
        """Write committed keys to Redis (one Lua call). -> keys another consumer had first."""
        late = self._record(staged.names, staged.seqs)
        with self._pending_lock:  # in Redis now: the in-process copy is no longer needed
            ids = {id(c) for c in staged.chunks}
            self._inflight = [c for c in self._inflight if id(c) not in ids]
        return late

    def replay_committed(self, batch: TradeBatch) -> None:
        """Rows already in the table: record their keys and add them to the Bloom filter."""
        if not len(batch):
            return
        names, seq, hashes = self._keys(batch)
        self._record(names, seq)
        self.bloom.add_batch(hashes, window=self.bloom.live_windows()[0])

    def _record(self, names: np.ndarray, seqs: np.ndarray) -> int:
        n = int(seqs.size)
        if n == 0:
            return 0
        staged = StagedKeys(names, seqs)
        within, order = self._planner.within_batch(staged.names, staged.seqs)
        none = np.zeros(n, bool)
        planned = self._planner.plan(
            np.full(n, -1, np.int32),
            np.full(n, -1, np.int64),
            staged.names,
            staged.seqs,
            order=order,
            live=~within,
            maybe=none,
            decided=none,
            fresh=none,
            windows=self.bloom.live_windows(),
            ttl_s=self.config.ttl_s,
            mode=Mode.RECORD,
        )
        late = self._store.apply(planned.plan).already_set
        self._count(recorded=n - int(np.count_nonzero(within)), late_duplicates=late)
        return late

    def summary(self) -> dict[str, int]:
        out = super().summary()
        with self._pending_lock:
            out["pending"] = sum(len(p.keys) for p in self._pending + self._inflight)
        return out

    def _pending_duplicates(
        self, names: np.ndarray, seq: np.ndarray, hashes: np.ndarray, maybe: np.ndarray
    ) -> np.ndarray:
        """Exact: rows whose key passed an earlier check and is not recorded yet."""
        out = np.zeros(names.size, bool)
        rows = np.flatnonzero(maybe)  # every pending key is in the Bloom filter
        if not rows.size:
            return out
        with self._pending_lock:
            chunks = self._pending + self._inflight
        for chunk in chunks:
            out[rows] |= chunk.holds(names[rows], seq[rows], hashes[rows])
        return out
