"""Commit-aligned two-tier deduplication of trade keys `(exchange, symbol, session, seq)`
(ADR 008, ADR 016):
a rotating in-process Bloom filter, then Redis on a "maybe"; check now, record once the rows
are durable.

- `check(batch)` drops duplicates (within the batch, among keys not yet in Redis, and in Redis
  when the Bloom filter says "maybe": one read-only Lua call) and holds the new keys pending.
  A Bloom false positive is therefore only a lookup that finds nothing: counted, and passed;
- `stage()` takes the pending keys for one Iceberg commit. They stay visible to `check` while
  that commit is in flight: the next poll overlaps the commit, and a duplicate in it must see
  the keys the commit is about to store;
- `record(staged)` writes them to Redis after that commit: one Lua call, bitmap spans;
- `restage(staged)` puts them back when the commit or Redis failed;
- `discard()` forgets every key not yet recorded, when the pipeline drops its buffer and
  rewinds to what the table records (a fenced commit, a Redis state rebuilt);
- `replay_committed(batch)` takes rows the table committed behind this process's back (its
  own commit before a crash, another writer's) into Redis and the Bloom filter
  (`k2lib.ingestion.state`);
- `warm()` loads the live windows from Redis into a fresh Bloom filter: call it at start and
  after every partition assignment.

A crash before `record` leaves nothing in Redis for rows the table lacks, and a feed
published again (new offsets, same keys) is dropped against Redis. Pending keys are checked
exactly in-process, so a duplicate arriving before its original is committed is caught too.
Between check and record, a key is known only to the process that checked it. Kafka keys
records by symbol, so one key's records reach one consumer; `record` counts keys another
consumer had recorded first (`late_duplicates`).

If the store fails, `check` and `record` raise ServiceError and nothing local has changed.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from k2lib.clock import Clock
from k2lib.errors import ConfigError, ValidationError
from k2lib.ingestion.dedup.bloom import RotatingBloom
from k2lib.ingestion.dedup.keys import key_hash, name_hashes, seqs_from_bitmap, session_names
from k2lib.ingestion.dedup.planner import DedupPlanner
from k2lib.ingestion.dedup.store import DedupStore
from k2lib.ingestion.sequence._runs import MAX_ABS_VALUE
from k2lib.wire.schema import TradeBatch

__all__ = ["CommitAlignedDeduplicator", "DedupConfig", "StagedKeys"]

DEFAULT_WINDOW_S = 300.0
DEFAULT_GENERATIONS = 2
DEFAULT_CAPACITY = 1_000_000
DEFAULT_ERROR_RATE = 0.001


@dataclass(frozen=True, kw_only=True)
class DedupConfig:
    """The horizon is `(generations - 1) * window_s` to `generations * window_s` seconds.

    `capacity` is the keys expected per window; with `error_rate` (per generation) it sizes
    the Bloom filter: `generations` filters of `bits_per_key(error_rate) * capacity` bits.
    """

    window_s: float = DEFAULT_WINDOW_S
    generations: int = DEFAULT_GENERATIONS
    capacity: int = DEFAULT_CAPACITY
    error_rate: float = DEFAULT_ERROR_RATE

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.generations < 2 or self.capacity < 1:
            raise ConfigError("dedup needs window_s > 0, generations >= 2 and capacity >= 1")
        if not 0.0 < self.error_rate < 1.0:
            raise ConfigError("dedup error_rate must be between 0 and 1")

    @property
    def ttl_s(self) -> int:
        return math.ceil(self.generations * self.window_s) + 1


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter("k2_dedup_records_total", "Records checked", registry=registry)
        self.duplicates = Counter(
            "k2_dedup_duplicates_total", "Records dropped as duplicates", registry=registry
        )
        self.false_positives = Counter(
            "k2_dedup_bloom_false_positives_total",
            "Bloom hits Redis did not hold",
            registry=registry,
        )
        self.confirmations = Counter(
            "k2_dedup_redis_confirmations_total",
            "Duplicates confirmed by Redis",
            registry=registry,
        )
        self.memory = Gauge(
            "k2_dedup_bloom_memory_bytes", "Bloom filter memory, all generations", registry=registry
        )


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


class CommitAlignedDeduplicator:
    """Two phases around the Iceberg commit (see the module doc). One batch at a time per
    process for `check`; `summary` may be read from another thread."""

    def __init__(
        self,
        store: DedupStore,
        *,
        config: DedupConfig | None = None,
        wall_clock: Clock = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        # Wall time, not monotonic: every process must agree on the window index that names
        # the Redis bitmaps.
        self.config = cfg = config or DedupConfig()
        self._store = store
        self.bloom = RotatingBloom(
            capacity=cfg.capacity,
            error_rate=cfg.error_rate,
            window_s=cfg.window_s,
            generations=cfg.generations,
            clock=wall_clock,
        )
        self._planner = DedupPlanner()
        self._metrics = _Metrics(registry if registry is not None else CollectorRegistry())
        self._metrics.memory.set(self.bloom.memory_bytes)
        self._totals: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []  # checked, not yet staged
        self._inflight: list[_Pending] = []  # staged for a commit, not yet recorded
        self._pending_lock = threading.Lock()

    @property
    def memory_bytes(self) -> int:
        return self.bloom.memory_bytes

    def warm(self) -> int:
        """Load the live windows' keys from the store into the Bloom filter. -> keys loaded."""
        loaded = 0
        for window in self.bloom.live_windows():
            parts = []
            for field, bitmap in self._store.scan(window):
                name, bucket = np.frombuffer(field, "<u8").tolist()
                seqs = seqs_from_bitmap(bucket, bitmap)
                parts.append(key_hash(np.full(seqs.size, name, np.uint64), seqs))
            if parts:
                hashes = np.concatenate(parts)
                self.bloom.add_batch(hashes, window=window)
                loaded += hashes.size
        return loaded

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
                names,
                seq,
                order=order,
                live=probes,
                maybe=probes,
                windows=windows,
                ttl_s=self.config.ttl_s,
            )
            found = self._store.probe(planned.plan)
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
        within, order = self._planner.within_batch(names, seqs)
        planned = self._planner.plan(
            names,
            seqs,
            order=order,
            live=~within,
            maybe=np.zeros(n, bool),
            windows=self.bloom.live_windows(),
            ttl_s=self.config.ttl_s,
        )
        late = self._store.record(planned.plan)
        self._count(recorded=n - int(np.count_nonzero(within)), late_duplicates=late)
        return late

    def summary(self) -> dict[str, int]:
        """Totals since start (for `k2 ingest`'s summary), and the keys not yet recorded."""
        with self._lock:
            out = dict(self._totals)
        with self._pending_lock:
            out["pending"] = sum(len(p.keys) for p in self._pending + self._inflight)
        return out

    @staticmethod
    def _keys(batch: TradeBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (name hash, seq, key hash) per row."""
        seq = batch.seq.astype(np.int64)
        if np.any((seq < 0) | (seq >= MAX_ABS_VALUE)):
            raise ValidationError("dedup needs seqs in [0, 2**53)")
        names = session_names(name_hashes(batch.exchange, batch.symbol), batch.session)
        return names, seq, key_hash(names, seq)

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self._totals[name] = self._totals.get(name, 0) + amount

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
