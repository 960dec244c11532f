"""What the cost model prices: the `Workload`, K2's `MeasuredInputs`, and the `SizingPolicy`.

- `Workload`: what the user asks for (rate, retention, query load). Projections scale only
  `messages_per_second`.
- `MeasuredInputs`: facts about K2 itself. Each value says whether it was measured (and
  where) or assumed, so a reader knows which numbers to distrust first.
- `SizingPolicy`: how K2 is deployed (headroom, replication, commit cadence). These are
  design choices, not measurements; the doc prints every one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from k2lib.config import DEFAULT_PARTITIONS
from k2lib.errors import CostModelError

__all__ = [
    "SECONDS_PER_MONTH",
    "Input",
    "MeasuredInputs",
    "SizingPolicy",
    "Workload",
]

# AWS bills a month as 730 hours; using the same month keeps $/hour lines and $/message
# figures consistent with each other and with the AWS calculator.
HOURS_PER_MONTH = 730.0
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0
DAYS_PER_MONTH = HOURS_PER_MONTH / 24.0

Status = Literal["measured", "assumed"]

# `k2 bench ingest --workers 2`: one `k2 ingest` process, full stages, alone in its group.
PER_WORKER_MSG_S = 109_649.1
PER_WORKER_SOURCE = (
    "k2 bench ingest --workers 2 --messages 1000000, 2026-12-02 03:07 UTC, load average 1.94 "
    "on 2 cores: the best 1-worker run (docs/performance.md, workers)"
)


def _check(name: str, value: float | None, *, low: float = 0.0, strict: bool = True) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CostModelError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        relation = ">" if strict else ">="
        raise CostModelError(f"{name} must be {relation} {low:g}, got {value:g}")


@dataclass(frozen=True, kw_only=True)
class Workload:
    """A market-data workload on AWS. Rates are averages; `peak_to_average` sizes for bursts."""

    messages_per_second: float = 10_000.0
    # None: the measured wire record size. Set it to price a different record.
    bytes_per_message: float | None = None
    # 1-minute peak/average in the Binance captures was 1.9 at a quiet hour; 3 covers news.
    peak_to_average: float = 3.0
    kafka_retention_hours: float = 72.0
    # None keeps all Kafka data on broker disks; a number moves older data to MSK tiered storage.
    kafka_local_retention_hours: float | None = None
    iceberg_retention_days: float = 365.0
    tier_to_ia_after_days: float | None = 30.0
    tier_to_glacier_ir_after_days: float | None = 90.0
    api_queries_per_day: float = 10_000.0
    api_query_window_minutes: float = 15.0
    # 15 minutes of BTCUSDT spot at the ~28 trades/s measured in the captures.
    api_rows_per_query: float = 25_000.0
    athena_scans_per_day: float = 10.0
    athena_scan_hours: float = 24.0

    def __post_init__(self) -> None:
        _check("messages_per_second", self.messages_per_second)
        _check("bytes_per_message", self.bytes_per_message)
        _check("peak_to_average", self.peak_to_average, low=1.0, strict=False)
        _check("kafka_retention_hours", self.kafka_retention_hours)
        _check("kafka_local_retention_hours", self.kafka_local_retention_hours)
        _check("iceberg_retention_days", self.iceberg_retention_days)
        # S3 lifecycle rules refuse Standard -> Standard-IA before 30 days.
        _check("tier_to_ia_after_days", self.tier_to_ia_after_days, low=30.0, strict=False)
        _check("tier_to_glacier_ir_after_days", self.tier_to_glacier_ir_after_days)
        for name in ("api_queries_per_day", "api_rows_per_query", "athena_scans_per_day"):
            _check(name, getattr(self, name), strict=False)
        _check("api_query_window_minutes", self.api_query_window_minutes)
        _check("athena_scan_hours", self.athena_scan_hours)
        local, total = self.kafka_local_retention_hours, self.kafka_retention_hours
        if local is not None and local > total:
            raise CostModelError(
                f"kafka_local_retention_hours ({local:g}) exceeds kafka_retention_hours ({total:g})"
            )
        ia, gir = self.tier_to_ia_after_days, self.tier_to_glacier_ir_after_days
        if ia is not None and gir is not None and gir <= ia:
            raise CostModelError(
                f"tier_to_glacier_ir_after_days ({gir:g}) must come after "
                f"tier_to_ia_after_days ({ia:g})"
            )

    @property
    def messages_per_month(self) -> float:
        return self.messages_per_second * SECONDS_PER_MONTH

    def scaled(self, factor: float) -> Workload:
        """The same workload at `factor` × the message rate (10x means exactly 10 ×)."""
        _check("scale", factor)
        return replace(self, messages_per_second=self.messages_per_second * factor)

    def with_(self, **changes: Any) -> Workload:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, kw_only=True)
class Input:
    """One input to the sizing, with its provenance."""

    value: float
    unit: str
    status: Status
    source: str

    def __post_init__(self) -> None:
        _check(f"input ({self.source})", self.value)
        if self.status not in ("measured", "assumed"):
            raise CostModelError(f"status must be 'measured' or 'assumed', got {self.status!r}")


@dataclass(frozen=True, kw_only=True)
class MeasuredInputs:
    """K2's own numbers. Defaults are deterministic: assumed, or recorded from a dated run;
    `k2lib.cost.measure` measures this machine."""

    wire_bytes_per_message: Input = Input(
        value=96.0, unit="bytes", status="assumed", source="no k2lib.wire.codec; assumed 96 B"
    )
    kafka_overhead_bytes: Input = Input(
        value=24.0,
        unit="bytes/message",
        status="assumed",
        source="Kafka v2 record framing plus the exchange:symbol key, batch header amortised",
    )
    parquet_bytes_per_message: Input = Input(
        value=20.0,
        unit="bytes/row",
        status="assumed",
        source="the Binance captures written with the table's zstd settings gave 14.8 B/row "
        "on 2026-11-25; 20 B allows for many more symbols per file",
    )
    # One `k2 ingest` process is one worker of the consumer group, and Python runs it on one
    # core: the fleet is sized in workers, one per core. Measured, not assumed: see the
    # "workers" section of docs/performance.md for the run and its load average.
    ingest_messages_per_core: Input = Input(
        value=PER_WORKER_MSG_S,
        unit="msg/s per worker (one k2 ingest process, one core)",
        status="measured",
        source=PER_WORKER_SOURCE,
    )
    produce_messages_per_core: Input = Input(
        value=100_000.0,
        unit="msg/s per core",
        status="assumed",
        source="ARCHITECTURE.md: ~200k msg/s produce on a 2-core machine, halved per core",
    )
    files_per_commit: Input = Input(
        value=1.0,
        unit="data files per consumer commit",
        status="assumed",
        source="one day partition per micro-batch, so one file per commit",
    )

    @property
    def compression_ratio(self) -> float:
        """Wire bytes / stored Parquet bytes: the real ratio when both are measured."""
        return self.wire_bytes_per_message.value / self.parquet_bytes_per_message.value

    def with_(self, **changes: Input) -> MeasuredInputs:
        return replace(self, **changes)

    def items(self) -> list[tuple[str, Input]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


@dataclass(frozen=True, kw_only=True)
class SizingPolicy:
    """How K2 is deployed on AWS. Each default is a design choice, stated in the doc."""

    availability_zones: int = 3
    replication_factor: int = 3
    full_stream_consumer_groups: int = 1
    broker_network_utilization: float = 0.5  # leave half the NIC for rebalances and catch-up
    broker_disk_fill: float = 0.8
    msk_max_brokers: int = 30  # default MSK quota per cluster
    msk_max_storage_gb_per_broker: float = 16_384.0
    partitions: int = DEFAULT_PARTITIONS  # what K2 ships with (k2lib.config)
    target_cpu_utilization: float = 0.7
    compute_instance: str = "c6i.large"  # 2 vCPU, the shape of the machine K2 was benchmarked on
    vcpus_per_instance: int = 2
    min_instances: int = 2  # per fleet, across two AZs
    commit_interval_s: float = 10.0
    metadata_files_per_commit: float = 3.0  # manifest, manifest list, metadata.json
    # `k2 compact` (and ingest's maintenance, which runs it): rewritten files of 128 MB, a
    # rewrite every 200 commits of each worker (MaintenanceConfig.compact_every_commits).
    target_file_mb: float = 128.0
    compact_every_commits: float = 200.0
    gets_per_file_read: float = 2.0  # Parquet footer, then the row groups
    max_table_commits_per_s: float = 1.0  # optimistic Iceberg commits contend beyond this
    dedup_horizon_s: float = 900.0
    redis_bytes_per_key: float = 80.0
    redis_ops_per_message: float = 1.0  # every key is written (batched) so a Bloom hit can check
    redis_ops_per_shard: float = 250_000.0
    redis_usable_memory: float = 0.75  # ElastiCache reserves 25% by default
    redis_replicas_per_shard: int = 1
    cross_az_fraction: float = 2.0 / 3.0  # a client in one AZ, its partition leader in another
    result_bytes_per_row: float = 120.0
    query_overhead_cpu_s: float = 0.02
    scan_bytes_per_core_s: float = 200e6
    series_per_process: float = 300.0
    series_per_partition: float = 4.0
    scrape_interval_s: float = 15.0
    log_gb_per_process_day: float = 0.1
    min_monthly_saving_usd: float = 100.0  # below this, a change is not worth making
    request_share_of_storage: float = 0.10

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float):
                _check(f.name, value, strict=f.name != "redis_replicas_per_shard")
        fractions = (
            "broker_network_utilization",
            "broker_disk_fill",
            "target_cpu_utilization",
            "redis_usable_memory",
            "cross_az_fraction",
            "request_share_of_storage",
        )
        for name in fractions:
            if getattr(self, name) > 1:
                raise CostModelError(f"{name} is a fraction and must be <= 1")

    def items(self) -> list[tuple[str, object]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]
