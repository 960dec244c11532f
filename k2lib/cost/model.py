"""`CostModel`: size K2 for a `Workload`, then price every line as quantity × unit price.

Sizing (`CostModel.size`) never reads a price, so a workload gets the same quantities in
every region and a price only multiplies its own lines. The limits of K2 as shipped (4
partitions, one Redis shard, one Iceberg table taking every consumer's commits, one MSK
cluster) are kept as `Pressure`s, demand / limit. Each is linear in the message rate, so
the rate at which a limit breaks is simply rate / pressure (see `k2lib.cost.triggers`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from k2lib.cost.measure import default_inputs
from k2lib.cost.prices import PriceBook, price_book
from k2lib.cost.workload import (
    DAYS_PER_MONTH,
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    MeasuredInputs,
    SizingPolicy,
    Workload,
)

__all__ = [
    "DEFAULT_SCALES",
    "GB",
    "SERVICES",
    "CostModel",
    "CostReport",
    "Deployment",
    "LineItem",
    "Pressure",
    "Projection",
]

DEFAULT_SCALES: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)
GB = float(2**30)  # AWS bills storage and transfer in binary GB (and TB = 1024 GB)
TB = GB * 1024
SERVICES = ("msk", "compute", "elasticache", "s3", "glue", "athena", "data_transfer", "monitoring")

# MSK m5 brokers: vCPUs, baseline network Gbps (EC2 docs) and max partitions per broker,
# replicas included (MSK best-practice guide). Network, not CPU, caps a broker's ingress.
BROKERS: tuple[tuple[str, int, float, int], ...] = (
    ("kafka.m5.large", 2, 0.75, 1000),
    ("kafka.m5.xlarge", 4, 1.25, 1000),
    ("kafka.m5.2xlarge", 8, 2.5, 2000),
    ("kafka.m5.4xlarge", 16, 5.0, 4000),
    ("kafka.m5.8xlarge", 32, 10.0, 4000),
    ("kafka.m5.12xlarge", 48, 12.0, 4000),
    ("kafka.m5.16xlarge", 64, 20.0, 4000),
    ("kafka.m5.24xlarge", 96, 25.0, 4000),
)
# ElastiCache r6g nodes and their memory in GiB.
REDIS_NODES: tuple[tuple[str, float], ...] = (
    ("cache.r6g.large", 13.07),
    ("cache.r6g.xlarge", 26.32),
    ("cache.r6g.2xlarge", 52.82),
    ("cache.r6g.4xlarge", 105.81),
    ("cache.r6g.8xlarge", 209.55),
    ("cache.r6g.12xlarge", 317.77),
    ("cache.r6g.16xlarge", 419.09),
)


def _ceil(x: float) -> int:
    # Tolerate float noise: 3.0000000001 brokers is 3 brokers.
    return max(0, math.ceil(x - 1e-9))


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


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


class CostModel:
    """Prices K2 on AWS: `CostModel(prices, inputs).price(workload) -> CostReport`."""

    def __init__(
        self,
        prices: PriceBook | None = None,
        inputs: MeasuredInputs | None = None,
        *,
        policy: SizingPolicy | None = None,
    ) -> None:
        self.prices = prices or price_book()
        self.inputs = inputs or default_inputs()
        self.policy = policy or SizingPolicy()

    def price(self, workload: Workload) -> CostReport:
        deployment = self.size(workload)
        lines = tuple(
            self._line(service, item, quantity, name)
            for service, item, quantity, name in _quantities(deployment, self.policy)
            if quantity > 0
        )
        return CostReport(
            region=self.prices.region,
            priced_on=self.prices.priced_on.isoformat(),
            workload=workload,
            deployment=deployment,
            lines=lines,
        )

    def project(
        self, baseline: Workload, scales: Iterable[float] = DEFAULT_SCALES
    ) -> list[Projection]:
        return [Projection(scale=s, report=self.price(baseline.scaled(s))) for s in scales]

    def _line(self, service: str, item: str, quantity: float, name: str) -> LineItem:
        unit_price = self.prices[name]
        return LineItem(
            service=service,
            item=item,
            quantity=quantity,
            unit=unit_price.unit,
            unit_price=unit_price.usd,
            usd=quantity * unit_price.usd,
            price=name,
        )

    def size(self, w: Workload) -> Deployment:
        p, m = self.policy, self.inputs
        rate, peak = w.messages_per_second, w.messages_per_second * w.peak_to_average
        wire = w.bytes_per_message or m.wire_bytes_per_message.value
        kafka_b = wire + m.kafka_overhead_bytes.value
        parquet_b = wire / m.compression_ratio
        parquet_rate = rate * parquet_b  # bytes/s landing in Iceberg

        def fleet(cores: float) -> int:
            return max(p.min_instances, _ceil(cores / p.vcpus_per_instance))

        util = p.target_cpu_utilization
        cores_f = peak / (m.ingest_messages_per_core.value * util)
        consumers = max(1, _ceil(cores_f))
        partitions = max(p.partitions, consumers)
        feed = fleet(peak / (m.produce_messages_per_core.value * util))
        qps_peak = w.api_queries_per_day / 86_400 * w.peak_to_average
        cpu_s = p.query_overhead_cpu_s + w.api_rows_per_query * parquet_b / p.scan_bytes_per_core_s
        api = fleet(qps_peak * cpu_s / util)

        # MSK: peak ingress fans out to RF-1 followers and every full-stream consumer group.
        fanout = p.replication_factor - 1 + p.full_stream_consumer_groups
        local_h = w.kafka_local_retention_hours or w.kafka_retention_hours
        msk_local = rate * kafka_b * local_h * 3600 * p.replication_factor / p.broker_disk_fill
        msk_local /= GB
        msk_tiered = rate * kafka_b * (w.kafka_retention_hours - local_h) * 3600 / GB
        az = p.availability_zones
        storage_brokers = _round_up(_ceil(msk_local / p.msk_max_storage_gb_per_broker), az)

        def broker_capacity(size: tuple[str, int, float, int]) -> float:
            """Ingress bytes/s one broker carries: its baseline NIC shared by the fan-out."""
            return size[2] * 125e6 * p.broker_network_utilization / fanout

        def brokers_for(size: tuple[str, int, float, int]) -> int:
            need = (
                _ceil(peak * kafka_b / broker_capacity(size)),
                _ceil(partitions * p.replication_factor / size[3]),
            )
            return _round_up(max(az, *need), az)

        # The fewest broker vCPUs that carry the peak and hold retention and partitions (m5
        # prices are proportional to vCPUs, so this is also the cheapest); ties go to fewer,
        # larger brokers. A minimum over sizes, so cost never dips as load grows.
        def vcpus(b: tuple[str, int, float, int]) -> tuple[int, int]:
            n = max(brokers_for(b), storage_brokers)
            return n * b[1], n

        broker = min(BROKERS, key=vcpus)
        broker_type, brokers = broker[0], vcpus(broker)[1]

        # Redis: dedup keys for the horizon at peak, and one element-op per message.
        redis_mem = peak * p.dedup_horizon_s * p.redis_bytes_per_key
        ops = peak * p.redis_ops_per_message
        # Node size from memory per shard with the shard count left continuous: once ops
        # force more than one shard, that ratio is constant, so cost never dips as load grows.
        per_shard = redis_mem / max(1.0, ops / p.redis_ops_per_shard)
        fitting = [n for n in REDIS_NODES if per_shard <= n[1] * GB * p.redis_usable_memory]
        node_type, gib = fitting[0] if fitting else REDIS_NODES[-1]
        usable = gib * GB * p.redis_usable_memory
        shards = max(1, _ceil(ops / p.redis_ops_per_shard), _ceil(redis_mem / usable))
        largest = REDIS_NODES[-1][1] * GB * p.redis_usable_memory

        # Iceberg on S3: steady state, the table full to its retention.
        daily_gb = parquet_rate * 86_400 / GB
        r, ia, gir = (
            w.iceberg_retention_days,
            w.tier_to_ia_after_days,
            w.tier_to_glacier_ir_after_days,
        )
        std_days = min(x for x in (r, ia, gir) if x is not None)
        ia_days = max(0.0, min(gir if gir is not None else r, r) - ia) if ia is not None else 0.0
        gir_days = max(0.0, r - gir) if gir is not None else 0.0
        target = p.target_file_mb * 2**20
        # Compact once a target-size file's worth has landed: sooner rewrites data twice.
        compaction_s = min(max(target / parquet_rate, p.min_compaction_interval_s), 86_400.0)
        commits = consumers * SECONDS_PER_MONTH / p.commit_interval_s
        small_files = commits * m.files_per_commit.value
        runs = SECONDS_PER_MONTH / compaction_s
        compacted = runs * max(1.0, parquet_rate * compaction_s / target)
        window_s = w.api_query_window_minutes * 60
        # A single-symbol query opens only the files of the consumer that owns its key's
        # partition (kafka_partition bounds in the manifests prune the rest).
        files_per_query = m.files_per_commit.value * _ceil(
            min(window_s, compaction_s) / p.commit_interval_s
        ) + _ceil(max(0.0, window_s - compaction_s) * parquet_rate / target)
        queries = w.api_queries_per_day * DAYS_PER_MONTH
        athena_scans = w.athena_scans_per_day * DAYS_PER_MONTH
        requests = {
            "put_commit": commits * (m.files_per_commit.value + p.metadata_files_per_commit),
            "put_compaction": compacted + runs * p.metadata_files_per_commit,
            "get_query": queries
            * (p.metadata_files_per_commit + files_per_query * p.gets_per_file_read),
            "get_compaction": small_files * p.gets_per_file_read,
            "transition_ia": compacted if ia is not None and r > ia else 0.0,
            "transition_gir": compacted if gir is not None and r > gir else 0.0,
            "glue": 2 * (commits + runs + athena_scans) + queries,
        }
        processes = consumers + feed + api
        # Producers and each full-stream consumer group talk to leaders in other AZs.
        clients = 1 + p.full_stream_consumer_groups
        inter_az = rate * kafka_b * SECONDS_PER_MONTH / GB * p.cross_az_fraction * clients
        series = processes * p.series_per_process + partitions * p.series_per_partition
        pressures = (
            Pressure(name="Kafka partitions", demand=cores_f, limit=p.partitions, unit="consumers"),
            Pressure(
                name="Redis single shard",
                demand=max(ops / p.redis_ops_per_shard, redis_mem / largest),
                limit=1.0,
                unit="shards",
            ),
            Pressure(
                name="Iceberg commit rate",
                demand=cores_f / p.commit_interval_s,
                limit=p.max_table_commits_per_s,
                unit="commits/s",
            ),
            Pressure(
                name="MSK cluster size",
                demand=max(
                    peak * kafka_b / broker_capacity(BROKERS[-1]),
                    msk_local / p.msk_max_storage_gb_per_broker,
                    cores_f * p.replication_factor / BROKERS[-1][3],
                ),
                limit=p.msk_max_brokers,
                unit="brokers",
            ),
        )
        return Deployment(
            peak_messages_per_second=peak,
            kafka_bytes_per_message=kafka_b,
            parquet_bytes_per_message=parquet_b,
            broker_type=broker_type,
            brokers=brokers,
            msk_local_gb=msk_local,
            msk_tiered_gb=msk_tiered,
            partitions=partitions,
            consumer_processes=consumers,
            consumer_instances=fleet(consumers),
            feed_instances=feed,
            api_instances=api,
            redis_node_type=node_type,
            redis_shards=shards,
            redis_nodes=shards * (1 + p.redis_replicas_per_shard),
            redis_memory_gb=redis_mem / GB,
            s3_gb={
                "standard": daily_gb * std_days,
                "standard_ia": daily_gb * ia_days,
                "glacier_ir": daily_gb * gir_days,
            },
            requests=requests,
            compaction_interval_s=compaction_s,
            files_per_query=files_per_query,
            athena_tb=athena_scans * w.athena_scan_hours * 3600 * parquet_rate / TB,
            inter_az_gb=inter_az,
            egress_gb=queries * w.api_rows_per_query * p.result_bytes_per_row / GB,
            samples=series * SECONDS_PER_MONTH / p.scrape_interval_s,
            log_gb=processes * p.log_gb_per_process_day * DAYS_PER_MONTH,
            pressures=pressures,
        )


def _tiers(total: float, tiers: tuple[tuple[float, str], ...]) -> list[tuple[float, str]]:
    """Split `total` across cumulative tier bounds: [(quantity in tier, price name)]."""
    out, floor = [], 0.0
    for bound, name in tiers:
        out.append((max(0.0, min(total, bound) - floor), name))
        floor = bound
    return out


def _quantities(d: Deployment, p: SizingPolicy) -> list[tuple[str, str, float, str]]:
    """(service, item, quantity in the price's unit, price name) for every line."""
    h = HOURS_PER_MONTH
    ec2 = f"ec2.{p.compute_instance}"
    rq = d.requests
    inf = math.inf
    q: list[tuple[str, str, float, str]] = [
        ("msk", f"{d.brokers} × {d.broker_type} brokers", d.brokers * h, f"msk.{d.broker_type}"),
        ("msk", "broker storage (retention × RF / fill)", d.msk_local_gb, "msk.storage"),
        ("msk", "tiered storage", d.msk_tiered_gb, "msk.tiered_storage"),
        ("compute", f"{d.consumer_instances} × ingest consumers", d.consumer_instances * h, ec2),
        ("compute", f"{d.feed_instances} × feed handlers", d.feed_instances * h, ec2),
        ("compute", f"{d.api_instances} × query API", d.api_instances * h, ec2),
        (
            "elasticache",
            f"{d.redis_nodes} × {d.redis_node_type} ({d.redis_shards} shard(s) + replicas)",
            d.redis_nodes * h,
            f"elasticache.{d.redis_node_type}",
        ),
    ]
    std = (51_200.0, "s3.standard.first_50tb"), (512_000.0, "s3.standard.next_450tb")
    for qty, name in _tiers(d.s3_gb["standard"], (*std, (inf, "s3.standard.over_500tb"))):
        q.append(("s3", "Standard storage", qty, name))
    q += [
        ("s3", "Standard-IA storage", d.s3_gb["standard_ia"], "s3.standard_ia"),
        ("s3", "Glacier Instant Retrieval storage", d.s3_gb["glacier_ir"], "s3.glacier_ir"),
        ("s3", "PUT: ingest commits", rq["put_commit"] / 1000, "s3.put"),
        ("s3", "PUT: compaction", rq["put_compaction"] / 1000, "s3.put"),
        ("s3", "GET: API queries", rq["get_query"] / 1000, "s3.get"),
        ("s3", "GET: compaction reads", rq["get_compaction"] / 1000, "s3.get"),
        ("s3", "lifecycle to Standard-IA", rq["transition_ia"] / 1000, "s3.transition.standard_ia"),
        ("s3", "lifecycle to Glacier IR", rq["transition_gir"] / 1000, "s3.transition.glacier_ir"),
    ]
    for qty, name in _tiers(
        rq["glue"] / 1e6, ((1.0, "glue.requests.first_1m"), (inf, "glue.requests"))
    ):
        q.append(("glue", "catalog requests (commits, queries, scans)", qty, name))
    q.append(("athena", "analyst scans", d.athena_tb, "athena.scanned"))
    q.append(
        (
            "data_transfer",
            "client traffic across AZs (out + in)",
            d.inter_az_gb * 2,
            "ec2.transfer.inter_az",
        )
    )
    internet = (
        (100.0, "ec2.transfer.internet.first_100gb"),
        (10_240.0, "ec2.transfer.internet.to_10tb"),
        (51_200.0, "ec2.transfer.internet.next_40tb"),
        (153_600.0, "ec2.transfer.internet.next_100tb"),
        (inf, "ec2.transfer.internet.over_150tb"),
    )
    for qty, name in _tiers(d.egress_gb, internet):
        q.append(("data_transfer", "query results to the internet", qty, name))
    amp = (
        (200.0, "amp.ingest.first_2b"),
        (25_200.0, "amp.ingest.next_250b"),
        (inf, "amp.ingest.over_252b"),
    )
    for qty, name in _tiers(d.samples / 1e7, amp):
        q.append(("monitoring", "Prometheus samples (AMP)", qty, name))
    q.append(("monitoring", "CloudWatch Logs ingestion", d.log_gb, "cloudwatch.logs.ingest"))
    return q
