"""Response shapes, for the OpenAPI schema. Handlers return plain JSON built by the engine
(validating every row through pydantic would cost more than the query); these models
document exactly that JSON, and the schema fuzzer checks that they agree."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "DegradationBody",
    "ErrorBody",
    "ErrorKind",
    "GapsBody",
    "HealthBody",
    "Priority",
    "Source",
    "TradeRow",
    "TradesBody",
]


class Source(StrEnum):
    hybrid = "hybrid"
    historical = "historical"
    realtime = "realtime"


class Priority(StrEnum):
    high = "high"
    normal = "normal"
    low = "low"


class TradeRow(BaseModel):
    exchange: str
    symbol: str
    seq: int
    exch_ts: str = Field(description="ISO-8601 UTC, microseconds")
    recv_ts: str = Field(description="ISO-8601 UTC, microseconds")
    price: str = Field(description="exact decimal, 8 places")
    qty: str = Field(description="exact decimal, 8 places")
    side: str | None = Field(description="buy, sell or null")
    source: str = Field(description="iceberg, spill (shed, not yet backfilled) or kafka")
    kafka_partition: int
    kafka_offset: int = Field(description="-1 for rows that never passed through the topic")


class TradesBody(BaseModel):
    rows: list[TradeRow]
    provenance: dict[str, Any] = Field(
        description="snapshot_id, seam, high_watermarks, rows_by_source, duplicates_removed, "
        "freshness, latency_ms, mode, partial, warnings"
    )


ErrorKind = Literal[
    "invalid_parameter",  # 422: a parameter outside its schema
    "bad_request",  # 400: parameters each valid, together not (start not before end)
    "not_found",  # 404: no such path
    "method_not_allowed",  # 405
    "inconsistent_seam",  # 409
    "overloaded",  # 503: shed by admission at the current degradation level
    "unavailable",  # 503: a dependency down
]


class ErrorBody(BaseModel):
    """Every 4xx and 5xx body the API sends."""

    error: ErrorKind
    detail: str = Field(description="what was wrong, naming the parameter")
    retry_after_s: int | None = Field(
        default=None, ge=1, description="set on 503, equal to the Retry-After header"
    )


class GapsBody(BaseModel):
    gaps: list[dict[str, Any]]
    count: int


class HealthBody(BaseModel):
    status: str = Field(description="ok or degraded")
    checks: dict[str, dict[str, Any]]
    degradation: str


class DegradationBody(BaseModel):
    level: str
    level_value: int
    source: str = Field(description="manager, redis or default")
    actions: dict[str, Any]
    status: dict[str, Any] | None = None
