"""The bill of quantities: every line of a `Deployment` in its price's unit.

Sizing (`k2lib.cost.model`) decides how much of each thing K2 needs; this module only says
which price each quantity is billed at, splitting tiered prices across their tiers.
"""

from __future__ import annotations

import math

from k2lib.cost.results import Deployment
from k2lib.cost.workload import HOURS_PER_MONTH, SizingPolicy

__all__ = ["line_quantities"]


def _tiers(total: float, tiers: tuple[tuple[float, str], ...]) -> list[tuple[float, str]]:
    """Split `total` across cumulative tier bounds: [(quantity in tier, price name)]."""
    out, floor = [], 0.0
    for bound, name in tiers:
        out.append((max(0.0, min(total, bound) - floor), name))
        floor = bound
    return out


def line_quantities(d: Deployment, p: SizingPolicy) -> list[tuple[str, str, float, str]]:
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
