"""Two-tier deduplication of trade keys `(exchange, symbol, seq)`, a batch at a time.

Per batch: (1) exact duplicates within the batch; (2) the rotating Bloom filter on the rest;
(3) one store call (Redis: one Lua script) that confirms the Bloom's "maybe" keys against
every live window and records every passing key in the current window. A Bloom false
positive is therefore only a lookup that finds nothing: it is counted and the record passes.
Every passing key is recorded, so the first duplicate of a key is caught too.

Across consumers, a key that another consumer recorded in the current window is caught even
when this process's Bloom filter never saw it (the store reports the overlap). Across
restarts, Redis is the truth: `warm()` loads the live windows into a fresh Bloom filter, and
(with `replay_detection`) Kafka redeliveries are recognised by offset and decided as they
were the first time. Call `warm()` at start and after every partition assignment. For a
pipeline that records keys only after its commit, see `two_phase.py`.

Not thread-safe for concurrent `filter` calls (one process, one batch at a time).

If the store fails, `filter` raises ServiceError and nothing local has changed.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from k2lib.clock import Clock
from k2lib.errors import ConfigError, ServiceError, ValidationError
from k2lib.ingestion.dedup.bloom import RotatingBloom
from k2lib.ingestion.dedup.keys import key_hash, name_hashes, seqs_from_bitmap
from k2lib.ingestion.dedup.planner import DedupPlanner
from k2lib.ingestion.dedup.store import DedupStore, Verdict
from k2lib.ingestion.sequence._runs import MAX_ABS_VALUE, replayed_mask
from k2lib.wire.schema import TradeBatch

__all__ = ["DedupConfig", "DedupResult", "Deduplicator"]

DEFAULT_WINDOW_S = 300.0
DEFAULT_GENERATIONS = 2
DEFAULT_CAPACITY = 1_000_000
DEFAULT_ERROR_RATE = 0.001
MAX_ATTEMPTS = 4


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
    replay_detection: bool = True
    """`filter` records keys before the rows are stored, so a crash replays records whose keys
    Redis already holds; recognising them by Kafka offset keeps them. Offsets must then be
    stable: call `forget_offsets()` after a broker lost its log. (Unused by the two-phase
    `CommitAlignedDeduplicator`, which records keys only after the commit.)"""

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.generations < 2 or self.capacity < 1:
            raise ConfigError("dedup needs window_s > 0, generations >= 2 and capacity >= 1")
        if not 0.0 < self.error_rate < 1.0:
            raise ConfigError("dedup error_rate must be between 0 and 1")

    @property
    def ttl_s(self) -> int:
        return math.ceil(self.generations * self.window_s) + 1


@dataclass(frozen=True, kw_only=True)
class DedupResult:
    keep: np.ndarray
    """bool per record: False for a duplicate."""
    duplicates: int
    within_batch: int
    confirmed: int
    """Duplicates found by the store: Bloom hits it confirmed, and keys another consumer wrote."""
    false_positives: int
    """Bloom hits the store did not hold: passed, and counted."""
    replayed: int
    bloom_maybe: int

    @property
    def kept(self) -> int:
        return int(np.count_nonzero(self.keep))

    @classmethod
    def empty(cls) -> DedupResult:
        zero = dict.fromkeys(
            ("duplicates", "within_batch", "confirmed", "false_positives", "replayed"), 0
        )
        return cls(keep=np.ones(0, bool), bloom_maybe=0, **zero)


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
        self.replayed = Counter(
            "k2_dedup_replayed_total", "Kafka redeliveries decided as before", registry=registry
        )
        self.memory = Gauge(
            "k2_dedup_bloom_memory_bytes", "Bloom filter memory, all generations", registry=registry
        )


class Deduplicator:
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

    def filter(self, batch: TradeBatch) -> DedupResult:
        """Decide every record of `batch`: `keep` is False for the duplicates."""
        n = len(batch)
        if n == 0:
            return DedupResult.empty()
        names, seq, hashes = self._keys(batch)
        windows = self.bloom.live_windows()
        within, order = self._planner.within_batch(names, seq)
        if within.any():
            maybe = np.zeros(n, bool)
            maybe[~within] = self.bloom.contains_batch(hashes[~within])
        else:
            maybe = self.bloom.contains_batch(hashes)
        replayed = np.zeros(n, bool)
        replay_dup = np.zeros(n, bool)
        store_dup = np.zeros(n, bool)  # found by the store: another consumer's key, or a probe
        for _ in range(MAX_ATTEMPTS):
            planned = self._planner.plan(
                batch.partition,
                batch.offset,
                names,
                seq,
                order=order,
                live=~within & ~replayed & ~store_dup,
                maybe=maybe,
                decided=(within & ~replayed) | store_dup,
                fresh=~replayed if self.config.replay_detection else np.zeros(n, bool),
                windows=windows,
                ttl_s=self.config.ttl_s,
            )
            verdict = self._store.apply(planned.plan)
            if verdict.verdict is Verdict.REPLAY:
                again = replayed_mask(batch, verdict.replayed) & ~replayed
                replayed |= again
                replay_dup |= again & self._planner.was_dropped(batch, verdict.replay_dropped)
                continue
            if verdict.verdict is Verdict.OVERLAP:
                store_dup |= self._planner.overlapping_rows(planned, verdict.overlaps, n)
                continue
            store_dup[planned.probe_rows[verdict.found]] = True
            false_positives = int(np.count_nonzero(~verdict.found))
            break
        else:
            raise ServiceError("dedup state kept moving under this batch; retry it")
        dup = (within & ~replayed) | (replayed & replay_dup) | store_dup
        passed = ~dup & ~replayed & ~within
        self.bloom.add_batch(hashes[passed], window=windows[0])
        result = DedupResult(
            keep=~dup,
            duplicates=int(np.count_nonzero(dup)),
            within_batch=int(np.count_nonzero(within & ~replayed)),
            confirmed=int(np.count_nonzero(store_dup)),
            false_positives=false_positives,
            replayed=int(np.count_nonzero(replayed)),
            bloom_maybe=int(np.count_nonzero(maybe & ~replayed)),
        )
        self._observe(n, result)
        return result

    def forget_offsets(self) -> None:
        """Drop the record of Kafka offsets deduplicated (after the broker lost its log)."""
        self._store.forget_offsets()

    def summary(self) -> dict[str, int]:
        """Totals since start (for `k2 ingest`'s summary)."""
        with self._lock:
            return dict(self._totals)

    @staticmethod
    def _keys(batch: TradeBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (name hash, seq, key hash) per row."""
        seq = batch.seq.astype(np.int64)
        if np.any((seq < 0) | (seq >= MAX_ABS_VALUE)):
            raise ValidationError("dedup needs seqs in [0, 2**53)")
        names = name_hashes(batch.exchange, batch.symbol)
        return names, seq, key_hash(names, seq)

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self._totals[name] = self._totals.get(name, 0) + amount

    def _observe(self, n: int, result: DedupResult) -> None:
        self._count(
            records=n,
            duplicates=result.duplicates,
            within_batch=result.within_batch,
            confirmed=result.confirmed,
            false_positives=result.false_positives,
            replayed=result.replayed,
        )
        m = self._metrics
        m.records.inc(n)
        m.duplicates.inc(result.duplicates)
        m.false_positives.inc(result.false_positives)
        m.confirmations.inc(result.confirmed)
        m.replayed.inc(result.replayed)
        m.memory.set(self.bloom.memory_bytes)
