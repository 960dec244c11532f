"""The REST API: a thin layer over HybridQueryEngine, with admission by degradation level.

Status codes say whose problem it is: 400/422 a bad request, 409 an inconsistent seam (the
broker lost data the snapshot relies on), 503 a dependency down or a query shed (with
Retry-After), 501 a capability not installed. A bad parameter never produces a 500.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from k2lib import __version__
from k2lib.api.admission import LevelSource, decide
from k2lib.api.health import health_checks
from k2lib.api.models import (
    DegradationBody,
    ErrorBody,
    GapsBody,
    HealthBody,
    Priority,
    Source,
    TradesBody,
)
from k2lib.api.observe import OpenGapsCollector, ResponseCounter, response_counter
from k2lib.config import K2Settings
from k2lib.connect import redis_client
from k2lib.errors import InconsistentSeamError, K2Error, QueryError
from k2lib.monitoring.metrics import new_registry
from k2lib.query import HybridQueryEngine
from k2lib.query.spec import MAX_LIMIT, NAME_PATTERN
from k2lib.query.timeparse import TIME_FORMS_HELP
from k2lib.resilience.levels import QueryPriority
from k2lib.resilience.manager import DegradationManager
from k2lib.resilience.shedder import LoadShedder

__all__ = ["create_app"]

UNAVAILABLE_RETRY_S = 5
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad parameter (e.g. an unreadable time)"},
    409: {"model": ErrorBody, "description": "The broker is behind the Iceberg snapshot"},
    503: {"model": ErrorBody, "description": "Shed under degradation, or a dependency down"},
}
Symbol = Annotated[str, Query(pattern=NAME_PATTERN, description="e.g. BTCUSDT")]
Exchange = Annotated[
    str | None,
    Query(pattern=NAME_PATTERN, description="e.g. binance; reads one partition when given"),
]
Time = Query(description=TIME_FORMS_HELP)
Limit = Annotated[int | None, Query(ge=1, le=MAX_LIMIT, description="keep the newest N")]


class _Metrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.requests = Counter(
            "k2_query_requests", "Query API requests", ["endpoint", "source", "status"], registry=r
        )
        self.latency = Histogram(
            "k2_query_latency_seconds", "Query API latency", ["endpoint"], registry=r
        )
        self.rejected = Counter(
            "k2_query_rejected", "Queries shed by admission", ["priority"], registry=r
        )
        for priority in Priority:  # at 0 before the first query is shed
            self.rejected.labels(priority.value)


def create_app(
    settings: K2Settings,
    *,
    engine: HybridQueryEngine | None = None,
    shedder: LoadShedder | None = None,
    manager: DegradationManager | None = None,
    registry: CollectorRegistry | None = None,
    levels: LevelSource | None = None,
) -> FastAPI:
    """The app. Whatever is not passed is built from `settings` (the engine reports its row
    metrics into `registry` only when the app builds it)."""
    registry = registry if registry is not None else new_registry()
    owned = engine is None
    engine = engine or HybridQueryEngine(settings, registry=registry)
    shedder = shedder or LoadShedder()
    levels = levels or LevelSource(
        manager=manager,
        redis_factory=lambda: redis_client(
            settings, socket_timeout=0.5, socket_connect_timeout=0.5
        ),
        status_key=settings.status_key,
    )
    metrics = _Metrics(registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:  # an engine passed in belongs to the caller
            engine.close()

    app = FastAPI(
        lifespan=lifespan,
        title="K2 query API",
        version=__version__,
        description="Trades from Iceberg history joined to the Kafka tail, with provenance.",
    )

    def run_query(
        endpoint: str,
        symbol: str,
        exchange: str | None,
        start: str,
        end: str,
        source: Source,
        limit: int | None,
        priority: Priority,
        allow_partial: bool,
    ) -> Response:
        t0 = time.perf_counter()
        status, served = 200, source.value
        try:
            reading = levels.current()
            decision = decide(
                shedder, QueryPriority[priority.name.upper()], reading.level, source.value
            )
            served = decision.source
            if not decision.admitted:
                status = 503
                metrics.rejected.labels(priority.value).inc()
                return _error(503, "overloaded", decision.reason, decision.retry_after_s)
            try:
                result = engine.query(
                    symbol,
                    start,
                    end,
                    exchange=exchange,
                    source=served,
                    limit=limit,
                    allow_partial=allow_partial,
                )
            except InconsistentSeamError as exc:
                status = 409
                return _error(409, "inconsistent_seam", str(exc))
            except QueryError as exc:
                status = 400
                return _error(400, "bad_request", str(exc))
            except K2Error as exc:
                status = 503
                return _error(503, "unavailable", str(exc), UNAVAILABLE_RETRY_S)
            body = result.as_dict()
            if decision.warning:
                prov = body["provenance"]
                prov["requested_source"] = source.value
                prov["warnings"] = [decision.warning, *prov["warnings"]]
            return JSONResponse(body)
        finally:
            metrics.requests.labels(endpoint, served, str(status)).inc()
            metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)

    @app.get("/v1/trades", response_model=TradesBody, responses=ERRORS)
    def trades(
        symbol: Symbol,
        exchange: Exchange = None,
        start: Annotated[str, Time] = "now-15m",
        end: Annotated[str, Time] = "now",
        source: Source = Source.hybrid,
        limit: Limit = None,
        priority: Priority = Priority.normal,
        allow_partial: bool = False,
    ) -> Response:
        """Trades with start <= exch_ts < end, oldest first, each exactly once."""
        return run_query(
            "/v1/trades", symbol, exchange, start, end, source, limit, priority, allow_partial
        )

    @app.get("/v1/trades/recent", response_model=TradesBody, responses=ERRORS)
    def recent(
        symbol: Symbol,
        exchange: Exchange = None,
        window_minutes: Annotated[int, Query(ge=1, le=10_080)] = 15,
        source: Source = Source.hybrid,
        limit: Limit = None,
        priority: Priority = Priority.normal,
        allow_partial: bool = False,
    ) -> Response:
        """The last `window_minutes` of trades, up to now."""
        return run_query(
            "/v1/trades/recent",
            symbol,
            exchange,
            f"now-{window_minutes}m",
            "now",
            source,
            limit,
            priority,
            allow_partial,
        )

    @app.get(
        "/v1/gaps",
        response_model=GapsBody,
        responses={501: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    )
    def gaps() -> Response:
        """Open sequence gaps, as the sequence tracker keeps them in Redis."""
        try:
            from k2lib.ingestion.sequence.gaps import list_gaps
        except ImportError:
            return _error(501, "not_implemented", "the sequence tracker is not installed")
        try:
            rows = list_gaps(redis_client(settings, socket_timeout=2.0), settings.sequence_prefix)
        except Exception as exc:
            return _error(
                503, "unavailable", f"cannot read gaps from Redis: {exc}", UNAVAILABLE_RETRY_S
            )
        return JSONResponse({"gaps": rows, "count": len(rows)})

    @app.get("/v1/health", response_model=HealthBody, responses={503: {"model": HealthBody}})
    def health() -> Response:
        """Each dependency's health; 503 when any is down."""
        checks = health_checks(settings, engine)
        ok = all(c["healthy"] for c in checks.values())
        body = {
            "status": "ok" if ok else "degraded",
            "checks": checks,
            "degradation": levels.current().level.name,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/v1/degradation", response_model=DegradationBody)
    def degradation() -> Response:
        """The current degradation level, where it was read, and what it allows."""
        return JSONResponse(levels.current().as_dict())

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    def prometheus() -> Response:
        """Prometheus text exposition of this process's registry."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    paths = [r.path for r in app.routes if isinstance(r, APIRoute)]
    app.add_middleware(ResponseCounter, counter=response_counter(registry, paths))
    registry.register(
        OpenGapsCollector(
            lambda: redis_client(settings, socket_timeout=0.5, socket_connect_timeout=0.5),
            settings.sequence_prefix,
        )
    )
    app.state.engine = engine
    return app


def _error(status: int, kind: str, detail: str, retry_after_s: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s else None
    body = {"error": kind, "detail": detail, "retry_after_s": retry_after_s}
    return JSONResponse(body, status_code=status, headers=headers)
