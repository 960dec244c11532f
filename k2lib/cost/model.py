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

from k2lib.cost.bill import line_quantities
from k2lib.cost.measure import default_inputs
from k2lib.cost.prices import PriceBook, price_book
from k2lib.cost.results import GB, TB, CostReport, Deployment, LineItem, Pressure, Projection
from k2lib.cost.workload import (
    DAYS_PER_MONTH,
    SECONDS_PER_MONTH,
    MeasuredInputs,
    SizingPolicy,
    Workload,
)

__all__ = ["BROKERS", "DEFAULT_SCALES", "REDIS_NODES", "CostModel"]

DEFAULT_SCALES: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)

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
            for service, item, quantity, name in line_quantities(deployment, self.policy)
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
        # `k2 ingest`'s maintenance compacts the table every `compact_every_commits` of its
        # own commits, so with several workers the table sees one that much more often.
        compaction_s = min(p.compact_every_commits * p.commit_interval_s / consumers, 86_400.0)
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
