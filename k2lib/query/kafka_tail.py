"""The Kafka side of a query: given partitions, from given offsets, to the high watermark.

`KafkaTail` keeps what it decoded, per partition, as a contiguous offset range `[lo, hi)`
(like kdb+'s real-time database keeps the day so far). A read from `s` with
`lo <= s <= hi` takes the cached rows at or after `s` and fetches only `[hi, hw)`. The
fetch still runs every time: it is what proves the current high watermark, and a
watermark below `hi` means the broker lost data, which drops the cache. A miss reads
`[s, hw)` cold. `cache_records=0` turns the cache off.

A topic deleted and created again can grow past `hi` before the next read, so the
watermark alone cannot see it. `topic_id()` can: a new id drops the topic's cache and the
idle consumers, which librdkafka 2.16 cannot safely reuse across the recreation (on Tansu
a pooled consumer that read the old topic crashes the process on its next read).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from k2lib.clock import Clock
from k2lib.config import K2Settings
from k2lib.errors import QueryError, ServiceError
from k2lib.query.fetch import (
    OFFSET_BEGINNING,
    Drained,
    can_prove_behind,
    combine,
    drain,
    new_consumer,
)
from k2lib.wire.partitioner import partition_for
from k2lib.wire.schema import ARROW_SCHEMA, TradeBatch

__all__ = ["KafkaTail", "TailConfig", "TailResult"]

DEFAULT_TIMEOUT_S = 10.0
# librdkafka's batch consume waits out its whole timeout unless the batch fills, so a
# short poll is what lets the EOF that ends a read be seen within a millisecond.
DEFAULT_POLL_S = 0.001
DEFAULT_BATCH = 100_000
DEFAULT_METADATA_TTL_S = 30.0
DEFAULT_CACHE_RECORDS = 1_000_000  # per partition: about 200 MB as NumPy plus Arrow
# A reused consumer skips the connection handshakes: 4.8 ms and 1 ms of CPU per warm read
# instead of 8 ms and 3.6 ms. Consumers are never shared: one read holds one at a time.
DEFAULT_POOL_SIZE = 4
MAX_CHUNKS = 64  # a segment grown by many small fetches is compacted now and then

Predicate = Callable[[TradeBatch], np.ndarray]


@dataclass(frozen=True, kw_only=True)
class TailConfig:
    """`timeout_s` bounds a read: a partition not at its end by then is `incomplete`."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    poll_s: float = DEFAULT_POLL_S
    batch: int = DEFAULT_BATCH
    metadata_ttl_s: float = DEFAULT_METADATA_TTL_S
    cache_records: int = DEFAULT_CACHE_RECORDS
    pool_size: int = DEFAULT_POOL_SIZE  # idle consumers kept for reuse (0: one per read)
    consumer_overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TailResult:
    """What a read found. Only partitions in `end_offsets` were read to their end."""

    batch: TradeBatch  # records passing the predicate, with partition/offset, offset order
    rows: pa.Table  # the same records in ARROW_SCHEMA (kept converted in the cache)
    start_offsets: dict[int, int]
    end_offsets: dict[int, int]  # the high watermark each finished partition reached
    behind: dict[int, tuple[int, int]]  # {p: (start, hw)}: hw < start, the broker lost data
    incomplete: list[int]  # not at their end before the deadline (broker down or slow)
    records_read: int  # fetched from the broker by this read
    records_cached: int = 0  # served from the cache
    dlq_skipped: int = 0  # values the ingest codec rejects (they went to the DLQ)

    @property
    def complete(self) -> bool:
        return not self.behind and not self.incomplete


@dataclass(frozen=True, slots=True)
class _Segment:
    lo: int  # first offset covered (records below it are not cached)
    hi: int  # the high watermark of the fetch that filled it
    batch: TradeBatch
    rows: pa.Table  # `batch` converted once, so a warm read only filters
    from_beginning: bool

    def covers(self, start: int) -> bool:
        if start == OFFSET_BEGINNING:
            return self.from_beginning or self.lo == 0
        return self.lo <= start <= self.hi


class KafkaTail:
    """`read(topic, start_offsets)` -> TailResult. Thread-safe; reads of one partition
    take turns, so the second of two concurrent queries finds the first one's records.
    `close()` when done."""

    def __init__(
        self,
        settings: K2Settings,
        *,
        config: TailConfig | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        self.config = config or TailConfig()
        self._clock = clock
        self._counts: dict[str, tuple[int, float]] = {}
        self._cache: dict[tuple[str, int], _Segment] = {}
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._guard = threading.Lock()
        self._idle: list[Consumer] = []
        self._ids: dict[str, str | None] = {}
        self._admin: AdminClient | None = None

    def topic_id(self, topic: str) -> str | None:
        """The broker's current UUID for `topic`, or None for a broker without topic ids.

        One DescribeTopics round trip on a kept admin client (about 0.5 ms locally), never
        cached: a stale id is the very thing it exists to catch. An id other than the last
        one seen drops the cached records of `topic` and closes the idle consumers.
        """
        with self._guard:
            if self._admin is None:
                self._admin = AdminClient(self.settings.kafka_config())
            admin = self._admin
        timeout = self.config.timeout_s
        try:
            found = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)
            uid = found[topic].result().topic_id
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise QueryError(
                    f"topic {topic!r} does not exist on {self.settings.kafka_bootstrap}"
                ) from exc
            raise ServiceError(f"broker {self.settings.kafka_bootstrap}: {exc}") from exc
        no_id = uid is None or (
            uid.get_most_significant_bits() == 0 and uid.get_least_significant_bits() == 0
        )
        current = None if no_id else str(uid)
        with self._guard:
            seen = self._ids.get(topic)
            self._ids[topic] = current
            recreated = seen is not None and current is not None and seen != current
            idle: list[Consumer] = []
            if recreated:
                for key in [k for k in self._cache if k[0] == topic]:
                    del self._cache[key]
                self._counts.pop(topic, None)  # the new topic may have other partitions
                idle, self._idle = self._idle, []
        for consumer in idle:
            consumer.close()
        return current

    def partitions_for_keys(self, topic: str, keys: Sequence[bytes]) -> list[int]:
        """The partitions holding `keys` (`exchange:symbol`), by Kafka's Java murmur2."""
        count = self.partition_count(topic)
        return sorted({partition_for(k, count) for k in keys})

    def partition_count(self, topic: str) -> int:
        with self._guard:
            cached = self._counts.get(topic)
        if cached is not None and self._clock() - cached[1] < self.config.metadata_ttl_s:
            return cached[0]
        consumer = new_consumer(self.settings, self.config.consumer_overrides)
        try:
            meta = consumer.list_topics(topic, timeout=self.config.timeout_s).topics.get(topic)
        except KafkaException as exc:
            raise ServiceError(f"broker {self.settings.kafka_bootstrap}: {exc}") from exc
        finally:
            consumer.close()
        if meta is None or meta.error is not None or not meta.partitions:
            raise QueryError(f"topic {topic!r} does not exist on {self.settings.kafka_bootstrap}")
        with self._guard:
            self._counts[topic] = (len(meta.partitions), self._clock())
        return len(meta.partitions)

    def clear(self) -> None:
        with self._guard:
            self._cache.clear()

    def close(self) -> None:
        """Close the idle consumers (the cache stays usable; reads open new ones)."""
        with self._guard:
            idle, self._idle = self._idle, []
        for consumer in idle:
            consumer.close()

    def read(
        self,
        topic: str,
        start_offsets: Mapping[int, int],
        *,
        partitions: Iterable[int] | None = None,
        predicate: Predicate | None = None,
    ) -> TailResult:
        """Read `partitions` (default: the keys of `start_offsets`) from their start offsets
        (absent: the beginning) up to the high watermark each fetch reports."""
        wanted = sorted(set(start_offsets) if partitions is None else set(partitions))
        start = {p: int(start_offsets.get(p, OFFSET_BEGINNING)) for p in wanted}
        with ExitStack() as stack:
            for p in wanted:  # sorted: concurrent readers lock in one order, never deadlock
                stack.enter_context(self._lock(topic, p))
            return self._read_locked(topic, start, predicate)

    # -- internals ------------------------------------------------------------------

    def _read_locked(
        self, topic: str, start: dict[int, int], predicate: Predicate | None
    ) -> TailResult:
        cached = {p: s for p in start if (s := self._cache.get((topic, p))) and s.covers(start[p])}
        fetch_from = {p: (cached[p].hi if p in cached else off) for p, off in start.items()}
        got = self._drain(topic, fetch_from)
        # Behind the cache but not the request: the broker lost what we cached. Forget it
        # and read the request cold, so the answer is what the broker holds now.
        stale = {p for p in got.behind if p in cached}
        for p in stale:
            self._cache.pop((topic, p), None)
            del cached[p]
        if stale:
            again = self._drain(topic, {p: start[p] for p in stale})
            got = combine(got, again, stale)
        parts: list[tuple[TradeBatch, pa.Table]] = []
        served = 0
        for p, off in start.items():
            if p not in got.ends:
                continue
            batch = got.batch.take(got.batch.partition == p)
            seg = cached.get(p)
            if seg is None:
                rows = batch.to_arrow()
            elif len(batch):
                served += len(seg.batch)
                rows = pa.concat_tables([seg.rows, batch.to_arrow()])
                batch = TradeBatch.concat([seg.batch, batch])
            else:
                served += len(seg.batch)
                batch, rows = seg.batch, seg.rows
            lo = seg.lo if seg is not None else max(off, 0)
            whole = off == OFFSET_BEGINNING or (seg is not None and seg.from_beginning)
            self._store(topic, p, _Segment(lo, got.ends[p], batch, rows, whole))
            parts.append((batch, rows))
        batch = TradeBatch.concat([b for b, _ in parts])
        rows = pa.concat_tables([r for _, r in parts]) if parts else ARROW_SCHEMA.empty_table()
        # One mask, one take: rows before each start (cached from earlier reads), and rows
        # the predicate rejects. Each take copies every column, so doing it once matters.
        first = np.zeros(max(start, default=-1) + 1, np.int64)
        for p, off in start.items():
            first[p] = max(off, 0)
        keep = batch.offset >= first[batch.partition] if len(batch) else np.zeros(0, bool)
        if predicate is not None and len(batch):
            keep &= predicate(batch)
        if not keep.all():
            batch, rows = _select(batch, rows, keep)
        return TailResult(
            batch=batch,
            rows=rows,
            start_offsets=dict(start),
            end_offsets=dict(got.ends),
            behind={p: (start[p], hw) for p, (_, hw) in got.behind.items()},
            incomplete=got.incomplete,
            records_read=got.records_read,
            records_cached=served,
            dlq_skipped=got.dlq_skipped,
        )

    def _drain(self, topic: str, start: dict[int, int]) -> Drained:
        consumer = self._acquire()
        if not can_prove_behind(consumer, topic, start):
            self._release(consumer, True)
            consumer = new_consumer(self.settings, self.config.consumer_overrides)
        reusable = False
        try:
            drained = drain(
                consumer,
                topic,
                start,
                deadline=self._clock() + self.config.timeout_s,
                clock=self._clock,
                poll_s=self.config.poll_s,
                batch=self.config.batch,
            )
            reusable = not drained.incomplete
            return drained
        except KafkaException as exc:
            raise ServiceError(
                f"reading {topic!r} from {self.settings.kafka_bootstrap}: {exc}"
            ) from exc
        finally:
            self._release(consumer, reusable)

    def _acquire(self) -> Consumer:
        with self._guard:
            if self._idle:
                return self._idle.pop()
        return new_consumer(self.settings, self.config.consumer_overrides)

    def _release(self, consumer: Consumer, reusable: bool) -> None:
        if reusable:
            consumer.unassign()
            with self._guard:
                if len(self._idle) < self.config.pool_size:
                    self._idle.append(consumer)
                    return
        consumer.close()

    def _store(self, topic: str, partition: int, seg: _Segment) -> None:
        cap = self.config.cache_records
        if cap <= 0:
            return
        n = len(seg.batch)
        if n > cap:  # keep the newest: the seam only moves forward
            keep = seg.batch.take(np.arange(n - cap, n))
            seg = _Segment(int(keep.offset[0]), seg.hi, keep, seg.rows.slice(n - cap), False)
        if seg.rows.num_columns and seg.rows.column(0).num_chunks > MAX_CHUNKS:
            seg = replace(seg, rows=seg.rows.combine_chunks())
        self._cache[(topic, partition)] = seg

    def _lock(self, topic: str, partition: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((topic, partition), threading.Lock())


def _select(batch: TradeBatch, rows: pa.Table, mask: np.ndarray) -> tuple[TradeBatch, pa.Table]:
    return batch.take(mask), rows.filter(pa.array(mask))
