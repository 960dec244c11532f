"""What the cost model returns: the sized `Deployment`, its priced `LineItem`s, the
`CostReport` that sums them, and `Projection`s of a baseline at a scale."""

from __future__ import annotations

import math
from dataclasses import dataclass

from k2lib.cost.workload import Workload

__all__ = [
    "GB",
    "SERVICES",
    "TB",
    "CostReport",
    "Deployment",
    "LineItem",
    "Pressure",
    "Projection",
]

GB = float(2**30)  # AWS bills storage and transfer in binary GB (and TB = 1024 GB)
TB = GB * 1024
SERVICES = ("msk", "compute", "elasticache", "s3", "glue", "athena", "data_transfer", "monitoring")


@dataclass(frozen=True, kw_only=True)
class LineItem:
    """One billed line: `usd == quantity × unit_price`, `unit_price` is PriceBook[`price`]."""

    service: str
    item: str
    quantity: float
    unit: str
    unit_price: float
    usd: float
    price: str


@dataclass(frozen=True, kw_only=True)
class Pressure:
    """Demand on one limit of K2 as shipped; `ratio` >= 1 means the limit is broken."""

    name: str
    demand: float
    limit: float
    unit: str

    @property
    def ratio(self) -> float:
        return self.demand / self.limit


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """The sized system: everything a line item counts, before any price is applied."""

    peak_messages_per_second: float
    kafka_bytes_per_message: float
    parquet_bytes_per_message: float
    broker_type: str
    brokers: int
    msk_local_gb: float
    msk_tiered_gb: float
    partitions: int
    consumer_processes: int
    consumer_instances: int
    feed_instances: int
    api_instances: int
    redis_node_type: str
    redis_shards: int
    redis_nodes: int
    redis_memory_gb: float
    s3_gb: dict[str, float]
    requests: dict[str, float]
    compaction_interval_s: float
    files_per_query: float
    athena_tb: float
    inter_az_gb: float
    egress_gb: float
    samples: float
    log_gb: float
    pressures: tuple[Pressure, ...]


@dataclass(frozen=True, kw_only=True)
class CostReport:
    """A priced workload. `monthly_usd` is the sum of the lines, by construction."""

    region: str
    priced_on: str
    workload: Workload
    deployment: Deployment
    lines: tuple[LineItem, ...]

    @property
    def monthly_usd(self) -> float:
        return math.fsum(line.usd for line in self.lines)

    @property
    def messages_per_month(self) -> float:
        return self.workload.messages_per_month

    @property
    def usd_per_million_messages(self) -> float:
        return self.monthly_usd / (self.messages_per_month / 1e6)

    def by_service(self) -> dict[str, float]:
        return {s: math.fsum(x.usd for x in self.lines if x.service == s) for s in SERVICES}

    @property
    def bottleneck(self) -> str:
        ranked = sorted(self.deployment.pressures, key=lambda p: p.ratio, reverse=True)
        top = ranked[0]
        if top.ratio < 1:
            return f"none yet; nearest limit: {top.name} at {top.ratio:.0%}"
        over = [f"{p.name} ({p.ratio:.1f}x)" for p in ranked[1:] if p.ratio >= 1]
        text = f"{top.name}: {top.demand:,.1f} {top.unit} vs {top.limit:,.0f} ({top.ratio:.1f}x)"
        return text + (f"; also over: {', '.join(over)}" if over else "")


@dataclass(frozen=True, kw_only=True)
class Projection:
    """The baseline at `scale` × its message rate."""

    scale: float
    report: CostReport

    @property
    def messages_per_second(self) -> float:
        return self.report.workload.messages_per_second

    def as_dict(self) -> dict[str, object]:
        return {
            "scale": self.scale,
            "messages_per_second": self.messages_per_second,
            "monthly_usd": round(self.report.monthly_usd, 4),
            "usd_per_million_messages": round(self.report.usd_per_million_messages, 8),
            "by_service": {k: round(v, 4) for k, v in self.report.by_service().items()},
            "bottleneck": self.report.bottleneck,
        }
