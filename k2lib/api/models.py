"""Response shapes, for the OpenAPI schema. Handlers return plain JSON built by the engine
(validating every row through pydantic would cost more than the query); these models
document exactly that JSON, and the schema fuzzer checks that they agree."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DegradationBody",
    "ErrorBody",
    "ErrorKind",
    "GapsBody",
    "HealthBody",
    "Priority",
    "Provenance",
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


TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"
DECIMAL_PATTERN = r"^-?[0-9]+\.[0-9]{8}$"


class TradeRow(BaseModel):
    exchange: str
    symbol: str
    seq: int
    exch_ts: str = Field(description="ISO-8601 UTC, microseconds", pattern=TIMESTAMP_PATTERN)
    recv_ts: str = Field(description="ISO-8601 UTC, microseconds", pattern=TIMESTAMP_PATTERN)
    price: str = Field(description="exact decimal, 8 places", pattern=DECIMAL_PATTERN)
    qty: str = Field(description="exact decimal, 8 places", pattern=DECIMAL_PATTERN)
    side: Literal["buy", "sell"] | None = Field(description="buy, sell or null")
    source: Literal["iceberg", "spill", "kafka"] = Field(
        description="iceberg, spill (shed, not yet backfilled) or kafka"
    )
    kafka_partition: int
    kafka_offset: int = Field(description="-1 for rows that never passed through the topic")


class Provenance(BaseModel):
    """Where the rows came from. The fields below are always present; the rest (topic ids,
    freshness, cache and DLQ counters) are documented in `k2lib.query.provenance`."""

    model_config = ConfigDict(extra="allow")

    source: Source = Field(description="the source served (hybrid may be served historical)")
    requested_source: Source
    mode: str = Field(description="offset (the snapshot's seam), historical or realtime")
    table: str
    topic: str
    snapshot_id: int | None = Field(description="the pinned Iceberg snapshot; null if none")
    seam: dict[str, int] = Field(description="partition -> first Kafka offset read")
    high_watermarks: dict[str, int]
    partitions: list[int]
    rows_by_source: dict[str, int]
    duplicates_removed: int
    partial: bool
    latency_ms: dict[str, float]
    freshness: dict[str, Any]
    warnings: list[str]


class TradesBody(BaseModel):
    rows: list[TradeRow]
    provenance: Provenance


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
    status: Literal["ok", "degraded"]
    checks: dict[str, dict[str, Any]]
    degradation: str


class DegradationBody(BaseModel):
    level: str
    level_value: int
    source: str = Field(description="manager, redis or default")
    actions: dict[str, Any]
    status: dict[str, Any] | None = None
