"""The REST API: a thin layer over HybridQueryEngine, with admission by degradation level.

Status codes say whose problem it is: 422 a parameter outside its schema (the OpenAPI gives
each one's exact grammar: `k2lib.api.grammar`), 400 parameters each valid but not together
(start not before end), 409 an inconsistent seam (the broker lost data the snapshot relies
on), 503 a dependency down or a query shed, always with Retry-After. Every error body is an
`ErrorBody`. A bad parameter never produces a 500.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from k2lib import __version__
from k2lib.api.admission import LevelSource, decide
from k2lib.api.grammar import (
    END_EXAMPLES,
    MAX_TIME_LENGTH,
    START_EXAMPLES,
    TIME_HELP,
    TIME_PATTERN,
)
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
from k2lib.ingestion.sequence.gaps import list_gaps
from k2lib.monitoring.metrics import new_registry
from k2lib.query import HybridQueryEngine
from k2lib.query.spec import MAX_LIMIT, NAME_PATTERN
from k2lib.query.timeparse import parse_time
from k2lib.resilience.levels import QueryPriority
from k2lib.resilience.manager import DegradationManager
from k2lib.resilience.shedder import LoadShedder

__all__ = ["create_app"]

UNAVAILABLE_RETRY_S = 5
MAX_NAME_BYTES = 16  # the wire format's fixed name width
RETRY_AFTER = {
    "Retry-After": {
        "description": "Whole seconds (at least 1) before the request is worth retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
UNAVAILABLE: dict[str, Any] = {
    "model": ErrorBody,
    "description": "Shed under degradation, or a dependency down",
    "headers": RETRY_AFTER,
}
INVALID: dict[str, Any] = {"model": ErrorBody, "description": "A parameter outside its schema"}
QUERY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "start is not before end"},
    409: {"model": ErrorBody, "description": "The broker is behind the Iceberg snapshot"},
    422: INVALID,
    503: UNAVAILABLE,
}
NAME_HELP = f"1-{MAX_NAME_BYTES} printable ASCII characters (no space)"


def _name(example: str, note: str = "") -> Any:
    """A symbol or exchange name: what the wire format's fixed-width name field holds."""
    return Query(
        pattern=NAME_PATTERN,
        min_length=1,
        max_length=MAX_NAME_BYTES,
        description=f"{NAME_HELP}, e.g. {example}{note}",
        examples=[example],
    )


Symbol = Annotated[str, _name("BTCUSDT")]
Exchange = Annotated[str | None, _name("binance", "; reads one partition when given")]
TIME_PARAMS = ("start", "end")


def _time(which: str, examples: tuple[str, ...]) -> Any:
    return Query(
        pattern=TIME_PATTERN,
        min_length=1,
        max_length=MAX_TIME_LENGTH,
        description=f"{which}. {TIME_HELP}",
        examples=list(examples),
    )


Limit = Annotated[
    int | None,
    Query(ge=1, le=MAX_LIMIT, description=f"keep the newest N rows (1-{MAX_LIMIT:,})"),
]


@dataclass(frozen=True)
class Serving:
    """How a trades query is served: the source asked for, the row limit, the priority, and
    whether a partial answer will do. One set of query parameters every trades endpoint takes."""

    source: Source
    limit: int | None
    priority: Priority
    allow_partial: bool


def _serving(
    source: Source = Source.hybrid,
    limit: Limit = None,
    priority: Priority = Priority.normal,
    allow_partial: bool = False,
) -> Serving:
    return Serving(source, limit, priority, allow_partial)


ServingParams = Annotated[Serving, Depends(_serving)]


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
        endpoint: str, symbol: str, exchange: str | None, start: str, end: str, serving: Serving
    ) -> Response:
        t0 = time.perf_counter()
        status, served = 200, serving.source.value
        try:
            reading = levels.current()
            decision = decide(
                shedder,
                QueryPriority[serving.priority.name.upper()],
                reading.level,
                serving.source.value,
            )
            served = decision.source
            if not decision.admitted:
                status = 503
                metrics.rejected.labels(serving.priority.value).inc()
                return _error(503, "overloaded", decision.reason, decision.retry_after_s)
            try:
                result = engine.query(
                    symbol,
                    start,
                    end,
                    exchange=exchange,
                    source=served,
                    limit=serving.limit,
                    allow_partial=serving.allow_partial,
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
                prov["requested_source"] = serving.source.value
                prov["warnings"] = [decision.warning, *prov["warnings"]]
            return JSONResponse(body)
        finally:
            metrics.requests.labels(endpoint, served, str(status)).inc()
            metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)

    @app.get("/v1/trades", response_model=TradesBody, responses=QUERY_ERRORS)
    def trades(
        symbol: Symbol,
        exchange: Exchange = None,
        start: Annotated[str, _time("Inclusive start of the window", START_EXAMPLES)] = "now-15m",
        end: Annotated[
            str, _time("Exclusive end of the window; after start", END_EXAMPLES)
        ] = "now",
        *,
        serving: ServingParams,
    ) -> Response:
        """Trades with start <= exch_ts < end, oldest first, each exactly once."""
        return run_query("/v1/trades", symbol, exchange, start, end, serving)

    @app.get(
        "/v1/trades/recent",
        response_model=TradesBody,
        responses={k: v for k, v in QUERY_ERRORS.items() if k != 400},
    )
    def recent(
        symbol: Symbol,
        exchange: Exchange = None,
        window_minutes: Annotated[
            int, Query(ge=1, le=10_080, description="minutes back from now (1-10,080: a week)")
        ] = 15,
        *,
        serving: ServingParams,
    ) -> Response:
        """The last `window_minutes` of trades, up to now."""
        start = f"now-{window_minutes}m"
        return run_query("/v1/trades/recent", symbol, exchange, start, "now", serving)

    @app.get("/v1/gaps", response_model=GapsBody, responses={503: UNAVAILABLE})
    def gaps() -> Response:
        """Open sequence gaps, as the sequence tracker keeps them in Redis."""
        try:
            rows = list_gaps(redis_client(settings, socket_timeout=2.0), settings.sequence_prefix)
        except Exception as exc:
            return _error(
                503, "unavailable", f"cannot read gaps from Redis: {exc}", UNAVAILABLE_RETRY_S
            )
        return JSONResponse({"gaps": rows, "count": len(rows)})

    @app.get(
        "/v1/health",
        response_model=HealthBody,
        responses={
            503: {
                "model": HealthBody,
                "description": "A dependency is down",
                "headers": RETRY_AFTER,
            }
        },
    )
    def health() -> Response:
        """Each dependency's health; 503 when any is down."""
        checks = health_checks(settings, engine)
        ok = all(c["healthy"] for c in checks.values())
        body = {
            "status": "ok" if ok else "degraded",
            "checks": checks,
            "degradation": levels.current().level.name,
        }
        if ok:
            return JSONResponse(body)
        return JSONResponse(
            body, status_code=503, headers={"Retry-After": str(UNAVAILABLE_RETRY_S)}
        )

    @app.get("/v1/degradation", response_model=DegradationBody)
    def degradation() -> Response:
        """The current degradation level, where it was read, and what it allows."""
        return JSONResponse(levels.current().as_dict())

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    def prometheus() -> Response:
        """Prometheus text exposition of this process's registry."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        return JSONResponse(
            {"error": "invalid_parameter", "detail": _explain(exc), "retry_after_s": None},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return JSONResponse(
            {"error": kind, "detail": str(exc.detail), "retry_after_s": None},
            status_code=exc.status_code,
            headers=exc.headers,
        )

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


def _explain(exc: RequestValidationError) -> str:
    """One sentence per bad parameter, naming it. A time gets the parser's own reason when
    it has one (`no UTC offset`), not the grammar's regular expression."""
    reasons = []
    for err in exc.errors():
        loc = err.get("loc", ())
        name = str(loc[-1]) if loc else "request"
        value = err.get("input")
        if err.get("type") == "string_pattern_mismatch" and name in TIME_PARAMS:
            reason = f"{value!r} is not a time the API reads; {TIME_HELP}"
            try:
                parse_time(str(value))
            except K2Error as why:
                reason = f"{why}"
        elif err.get("type") == "string_pattern_mismatch":
            reason = f"{value!r} is not {NAME_HELP}"
        else:
            reason = str(err.get("msg", "invalid"))
            if isinstance(value, str) and len(value) <= 80:
                reason = f"{reason}, got {value!r}"
        reasons.append(f"{name}: {reason}")
    return "; ".join(reasons) or "invalid request"


def _error(status: int, kind: str, detail: str, retry_after_s: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s else None
    body = {"error": kind, "detail": detail, "retry_after_s": retry_after_s}
    return JSONResponse(body, status_code=status, headers=headers)
