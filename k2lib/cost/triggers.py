"""Optimization triggers: the points, computed by the model, at which K2 must change.

Two kinds:
- limits of K2 as shipped (one worker, partitions, one Redis shard, one table's commit rate,
  one MSK cluster). Their pressure is linear in the message rate, so each breaks at
  rate / pressure. Each action names the mechanism K2 has for it (workers in one consumer
  group, `k2 up --cluster`'s Redis Cluster, `k2 compact`) or says that K2 lacks one.
- changes that save money (tiered storage, lifecycle rules, commitments, commit cadence).
  Each is priced by running the model twice, with and without the change; it is worth
  making once it saves `SizingPolicy.min_monthly_saving_usd` a month.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from k2lib.cost.model import CostModel
from k2lib.cost.results import CostReport
from k2lib.cost.workload import Workload

__all__ = ["Trigger", "compute_triggers"]


@dataclass(frozen=True, kw_only=True)
class Trigger:
    """Fires when `metric` goes `direction` `threshold`; `action` is the change it calls for."""

    name: str
    metric: str
    threshold: float
    unit: str
    at_baseline: float
    direction: Literal["above", "below"]
    action: str

    @property
    def fired(self) -> bool:
        if self.direction == "above":
            return self.at_baseline >= self.threshold
        return self.at_baseline < self.threshold

    def as_dict(self) -> dict[str, object]:
        value = round(self.threshold, 4) if math.isfinite(self.threshold) else None
        return {
            "name": self.name,
            "threshold": {
                "metric": self.metric,
                "value": value,
                "unit": self.unit,
                "direction": self.direction,
                "at_baseline": round(self.at_baseline, 4),
            },
            "action": self.action,
        }


def _usd(report: CostReport, prefix: str) -> float:
    return math.fsum(x.usd for x in report.lines if x.price.startswith(prefix))


def compute_triggers(model: CostModel, baseline: Workload) -> list[Trigger]:
    """Every trigger, evaluated at `baseline`."""
    p, m = model.policy, model.inputs
    base = model.price(baseline)
    d = base.deployment
    rate = baseline.messages_per_second
    press = {x.name: x for x in d.pressures}
    at = {s: model.size(baseline.scaled(s)) for s in (10.0, 100.0)}

    def breaks_at(name: str) -> float:
        return rate / press[name].ratio

    def above_rate(*, name: str, threshold: float, action: str) -> Trigger:
        return Trigger(
            name=name,
            metric="messages_per_second",
            threshold=threshold,
            unit="msg/s",
            at_baseline=rate,
            direction="above",
            action=action,
        )

    per_worker = m.ingest_messages_per_core.value * p.target_cpu_utilization
    out = [
        above_rate(
            name="add_ingest_workers",
            threshold=rate / press["Kafka partitions"].demand,
            action=f"One `k2 ingest` process carries {per_worker:,.0f} msg/s at "
            f"{p.target_cpu_utilization:.0%} CPU (measured per worker: "
            f"{m.ingest_messages_per_core.value:,.0f} msg/s) at a {baseline.peak_to_average:g}x "
            "peak. Start more `k2 ingest` processes with the same settings: they share the "
            "topic's partitions as one consumer group (default k2-ingest.<topic>.<table>, "
            "cooperative-sticky), and each commit is compare-and-set on its partitions' "
            f"versions, so no record is stored twice. {d.consumer_processes} at baseline, "
            f"{at[10.0].consumer_processes} at 10x, {at[100.0].consumer_processes} at 100x.",
        ),
        above_rate(
            name="more_partitions",
            threshold=breaks_at("Kafka partitions"),
            action=f"{p.partitions} partitions give work to at most {p.partitions} workers; "
            "one more joins the group idle. Create the topic with more partitions "
            f"(K2_PARTITIONS) before the feed starts: {at[10.0].partitions} at 10x, "
            f"{at[100.0].partitions} at 100x. Not built: K2 cannot grow a live topic, which "
            "moves keys to other partitions while their sequence and dedup state stays "
            "with the old one.",
        ),
        above_rate(
            name="redis_cluster_mode",
            threshold=breaks_at("Redis single shard"),
            action=f"One shard takes {p.redis_ops_per_shard:,.0f} dedup writes/s (baseline "
            f"peak: {d.peak_messages_per_second * p.redis_ops_per_message:,.0f}/s, "
            f"{d.redis_memory_gb:,.1f} GB of keys for a {p.dedup_horizon_s / 60:g} min horizon). "
            "Move to a Redis Cluster as `k2 up --cluster` runs one (K2_PROFILE=cluster, "
            "ElastiCache cluster mode on AWS): keys are hash-tagged per prefix, so a feed's "
            "sequence state, dedup keys and ledger sit in different slots and feeds and "
            f"tables spread over the shards ({at[10.0].redis_shards} shards at 10x, "
            f"{at[100.0].redis_shards} at 100x). Not built: one feed's dedup keys share one "
            "slot, so past one shard a single feed needs a hash tag per partition group "
            "(ADR 013).",
        ),
        above_rate(
            name="iceberg_single_committer",
            threshold=breaks_at("Iceberg commit rate"),
            action=f"Every worker commits its own partitions every {p.commit_interval_s:g} s; "
            f"beyond {p.max_table_commits_per_s:g} commit/s the compare-and-set commits on one "
            "table collide and retry (each retry re-reads the table). Not built: K2 has no "
            "single committer per table that takes the workers' files and offsets and "
            "appends them in one snapshot. Until it does, lengthen `--commit-interval` so "
            "workers / interval stays under the limit (hybrid queries read the Kafka tail, "
            "so freshness does not suffer).",
        ),
        above_rate(
            name="msk_cluster_limit",
            threshold=breaks_at("MSK cluster size"),
            action=f"One MSK cluster needs more than {p.msk_max_brokers} brokers (the default "
            f"quota; network, {p.msk_max_storage_gb_per_broker:,.0f} GB of storage per broker "
            "or partitions bind). Move retention to tiered storage first, which removes the "
            "storage term, then raise the quota or split venues across clusters.",
        ),
        _compaction(model, base),
        _s3_lifecycle(model, baseline, base),
        _msk_tiered(model, baseline, base),
        _reserved(model, baseline, base),
    ]
    return out


def _compaction(model: CostModel, base: CostReport) -> Trigger:
    p, d = model.policy, base.deployment
    put_usd = math.fsum(x.usd for x in base.lines if x.item == "PUT: ingest commits")
    storage_usd = math.fsum(x.usd for x in base.lines if x.unit == "GB-month" and x.service == "s3")
    # PUT cost scales as 1 / commit interval, so solve PUT = share × storage for the interval.
    threshold = put_usd * p.commit_interval_s / (p.request_share_of_storage * storage_usd)
    return Trigger(
        name="compaction_cadence",
        metric="commit_interval_s",
        threshold=threshold,
        unit="s",
        at_baseline=p.commit_interval_s,
        direction="below",
        action=f"Below {threshold:.0f} s between commits, commit PUTs cost more than "
        f"{p.request_share_of_storage:.0%} of S3 storage. Commit less often (hybrid queries "
        "read the Kafka tail, so a longer interval costs no freshness). `k2 compact` "
        f"rewrites a day's small files into {p.target_file_mb:g} MB ones, and each "
        f"worker's maintenance runs it every {p.compact_every_commits:g} of its commits: "
        f"every {d.compaction_interval_s / 60:.0f} min with {d.consumer_processes} "
        f"worker{'' if d.consumer_processes == 1 else 's'} "
        f"at baseline, when a {base.workload.api_query_window_minutes:g}-minute "
        f"single-symbol query opens {d.files_per_query:,.0f} files.",
    )


def _s3_lifecycle(model: CostModel, baseline: Workload, base: CostReport) -> Trigger:
    flat = model.price(
        baseline.with_(tier_to_ia_after_days=None, tier_to_glacier_ir_after_days=None)
    )
    tiered = (
        base
        if baseline.tier_to_ia_after_days is not None
        else model.price(
            baseline.with_(tier_to_ia_after_days=30.0, tier_to_glacier_ir_after_days=90.0)
        )
    )
    table_gb = math.fsum(base.deployment.s3_gb.values())
    saving = _usd(flat, "s3.") - _usd(tiered, "s3.")
    per_gb = saving / table_gb
    threshold = model.policy.min_monthly_saving_usd / per_gb if per_gb > 0 else math.inf
    prices = model.prices
    kept = prices["s3.standard.first_50tb"].usd - prices["s3.standard_ia"].usd
    reads = kept / prices["s3.retrieval.standard_ia"].usd
    return Trigger(
        name="s3_lifecycle_tiering",
        metric="iceberg_table_gb",
        threshold=threshold,
        unit="GB",
        at_baseline=table_gb,
        direction="above",
        action=f"Lifecycle the table's data files to Standard-IA after 30 days and Glacier "
        f"Instant Retrieval after 90: ${saving:,.0f}/month saved at baseline. It pays only "
        f"while cold data is read less than {reads:.1f}x a month (IA retrieval fees), and "
        "snapshot expiry must delete, not tier, the small files compaction replaced.",
    )


def _msk_tiered(model: CostModel, baseline: Workload, base: CostReport) -> Trigger:
    hot = min(6.0, baseline.kafka_retention_hours)
    local = model.price(baseline.with_(kafka_local_retention_hours=None))
    tiered = model.price(baseline.with_(kafka_local_retention_hours=hot))
    saving = _usd(local, "msk.") - _usd(tiered, "msk.")
    local_gb = local.deployment.msk_local_gb
    per_gb = saving / local_gb
    threshold = model.policy.min_monthly_saving_usd / per_gb if per_gb > 0 else math.inf
    return Trigger(
        name="msk_tiered_storage",
        metric="kafka_broker_storage_gb",
        threshold=threshold,
        unit="GB",
        at_baseline=base.deployment.msk_local_gb,
        direction="above",
        action=f"Keep {hot:g} h on broker disks and the rest of the "
        f"{baseline.kafka_retention_hours:g} h in MSK tiered storage (one copy, not "
        f"{model.policy.replication_factor}): ${saving:,.0f}/month saved at baseline. Replays "
        "older than the hot window then read from the tier, more slowly.",
    )


def _reserved(model: CostModel, baseline: Workload, base: CostReport) -> Trigger:
    prices, p = model.prices, model.policy
    # EC2 at average load is always on; the burst above it is not. Redis nodes never scale
    # down, so all of them count as steady.
    steady = model.price(baseline.with_(peak_to_average=1.0))
    ec2 = f"ec2.{p.compute_instance}"
    ec2_usd = math.fsum(x.usd for x in steady.lines if x.price == ec2)
    cache_usd = _usd(base, "elasticache.")
    ec2_off = 1 - prices[f"{ec2}.savings_plan_1y"].usd / prices[ec2].usd
    cache_off = 1 - (
        prices["elasticache.cache.r6g.large.reserved_1y"].usd
        / prices["elasticache.cache.r6g.large"].usd
    )
    spend = ec2_usd + cache_usd
    saving = ec2_usd * ec2_off + cache_usd * cache_off
    blended = saving / spend
    d = steady.deployment
    fleet = d.consumer_instances + d.feed_instances + d.api_instances
    return Trigger(
        name="reserved_and_spot_capacity",
        metric="steady_compute_usd_per_month",
        threshold=p.min_monthly_saving_usd / blended,
        unit="USD/month",
        at_baseline=spend,
        direction="above",
        action=f"Commit 1-year, no upfront, to the average-load fleet ({fleet} EC2 instances, "
        f"{base.deployment.redis_nodes} cache nodes at baseline): {blended:.0%} off, "
        f"${saving:,.0f}/month; a commitment pays if the capacity runs more than "
        f"{1 - ec2_off:.0%} of hours. Run the "
        f"{baseline.peak_to_average:g}x peak headroom on Spot: consumers resume from the "
        "offsets in the last Iceberg snapshot, so a reclaimed instance loses nothing. MSK "
        "brokers have no reservations.",
    )
