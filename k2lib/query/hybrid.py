"""The hybrid query: Iceberg at a pinned snapshot S, plus Kafka from S's recorded offsets up
to the high watermark. Every record is in exactly one of the two, so the union is complete
and holds each record once, however far behind ingest is and whatever it commits meanwhile.

Failure is never silent. A broker behind S raises InconsistentSeamError; a side that fails
raises ServiceError. With `allow_partial=True` the answer comes back instead, carrying
`provenance.partial = True` and the reasons in `warnings`. A bad request is a QueryError.
The steps of one query are in execute.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from pyiceberg.catalog import Catalog

from k2lib.clock import Clock
from k2lib.config import K2Settings
from k2lib.query.execute import QueryContext, QueryMetrics, QueryRun
from k2lib.query.historical import IcebergReader
from k2lib.query.kafka_tail import KafkaTail
from k2lib.query.provenance import QueryResult
from k2lib.query.spec import QuerySpec
from k2lib.query.timeparse import wall_clock_micros
from k2lib.stack.catalog import load_k2_catalog

__all__ = ["EngineConfig", "HybridQueryEngine"]

DEFAULT_OVERLAP_BUFFER_S = 120.0
DEFAULT_WORKERS = 8


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """`overlap_buffer_s` is the plan's 2-minute buffer, used only for tables whose commits
    recorded no Kafka offsets. `allow_partial` is the default for queries that do not say."""

    overlap_buffer_s: float = DEFAULT_OVERLAP_BUFFER_S
    allow_partial: bool = False
    workers: int = DEFAULT_WORKERS


class HybridQueryEngine:
    """`query(symbols, start, end, ...)` -> QueryResult. Thread-safe; `close()` when done."""

    def __init__(
        self,
        settings: K2Settings,
        *,
        catalog: Catalog | None = None,
        tail: KafkaTail | None = None,
        config: EngineConfig | None = None,
        clock: Clock = time.perf_counter,
        now: Callable[[], int] = wall_clock_micros,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.config = config or EngineConfig()
        self.reader = IcebergReader(catalog or load_k2_catalog(settings), settings.table)
        self._owns_tail = tail is None
        self.tail = tail or KafkaTail(settings)
        self.clock = clock
        self.now = now
        self.metrics = QueryMetrics(registry) if registry is not None else None
        # Both sides run at once: an answer costs the slower side, not the sum.
        self.pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="k2-query")
        self.context = QueryContext(
            settings=settings,
            reader=self.reader,
            tail=self.tail,
            pool=self.pool,
            overlap_buffer_s=self.config.overlap_buffer_s,
            clock=clock,
            now=now,
            metrics=self.metrics,
        )

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_tail:
            self.tail.close()

    def __enter__(self) -> HybridQueryEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(
        self,
        symbols: str | Sequence[str],
        start: int | str,
        end: int | str,
        *,
        exchange: str | None = None,
        source: str = "hybrid",
        limit: int | None = None,
        allow_partial: bool | None = None,
    ) -> QueryResult:
        """Trades of `symbols` with start <= exch_ts < end, oldest first, each exactly once.

        `start`/`end`: UTC microseconds or a timeparse form (`now-15m`, ISO-8601, epoch).
        `limit` keeps the newest rows. `source`: hybrid, historical (Iceberg at S only) or
        realtime (Kafka only, from the start of each partition).
        """
        partial_ok = self.config.allow_partial if allow_partial is None else allow_partial
        q = QuerySpec.build(symbols, start, end, exchange, source, limit, partial_ok, self.now)
        return QueryRun(self.context, q).execute()
