"""Render a cost study three ways: terminal table, JSON, and the markdown doc.

All three come from one `CostStudy`, so the table, the JSON and
docs/operations/cost-model.md cannot disagree with each other or with the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from k2lib.cost.model import DEFAULT_SCALES, CostModel
from k2lib.cost.results import SERVICES, Projection
from k2lib.cost.triggers import Trigger, compute_triggers
from k2lib.cost.workload import SECONDS_PER_MONTH, Workload

__all__ = ["DOC_PATH", "CostStudy", "build_study", "render_markdown", "render_table", "to_json"]

DOC_PATH = "docs/operations/cost-model.md"
SIZING_RULES = (
    "- **MSK**: the m5 size and count with the fewest vCPUs that carry the peak ingress "
    "(wire bytes + Kafka framing) at half the broker's baseline network, shared by RF-1 "
    "replicas and each full-stream consumer group; at least one broker per AZ, whole AZ "
    "sets; enough brokers for the partition replicas and for retention × RF / disk fill at "
    "16 TiB a broker. Storage is that retention, or only the hot part with tiered storage.",
    "- **Consumers**: `k2 ingest` workers in one consumer group, peak msg/s / (measured "
    "msg/s per worker × target utilisation); a worker is one process on one core (Python), "
    "at most one per partition, on 2-vCPU instances. Feed handlers the same from produce "
    "throughput; the query API from queries × CPU per query.",
    "- **ElastiCache Redis**: dedup keys in the horizon at peak × bytes per key, and one "
    "write per message against a per-shard ops ceiling; one replica per shard.",
    "- **S3**: Parquet bytes per message (wire / measured compression ratio) × rate × "
    "retention, split Standard / Standard-IA / Glacier IR by the lifecycle days. PUTs: "
    "workers × commits × (data files + metadata files), plus compaction (`k2 compact`, "
    "which each worker's maintenance runs every compact_every_commits of its commits). GETs: per "
    "query, metadata plus the small files of one consumer in the window, plus compaction "
    "reads. Lifecycle transitions per compacted file.",
    "- **Glue**: two requests per commit, compaction and Athena scan, one per API query.",
    "- **Athena**: analyst scans × hours scanned × Parquet bytes per hour.",
    "- **Data transfer**: producer and consumer traffic that crosses AZs (billed both "
    "ways); query results to the internet.",
    "- **Monitoring**: Prometheus series per process and per partition, scraped every "
    "15 s, into Amazon Managed Service for Prometheus; logs into CloudWatch Logs.",
)


@dataclass(frozen=True, kw_only=True)
class CostStudy:
    """A baseline, its projections and triggers, all from one model."""

    model: CostModel
    baseline: Workload
    projections: tuple[Projection, ...]
    triggers: tuple[Trigger, ...]


def build_study(
    model: CostModel, baseline: Workload, scales: Iterable[float] = DEFAULT_SCALES
) -> CostStudy:
    if baseline.bytes_per_message is None:  # show the record size actually priced
        baseline = baseline.with_(bytes_per_message=model.inputs.wire_bytes_per_message.value)
    return CostStudy(
        model=model,
        baseline=baseline,
        projections=tuple(model.project(baseline, scales)),
        triggers=tuple(compute_triggers(model, baseline)),
    )


def to_json(study: CostStudy) -> dict[str, Any]:
    return {
        "region": study.model.prices.region,
        "priced_on": study.model.prices.priced_on.isoformat(),
        "baseline": study.baseline.as_dict(),
        "projections": [p.as_dict() for p in study.projections],
        "triggers": [t.as_dict() for t in study.triggers],
    }


def _scale(x: float) -> str:
    return f"{x:g}x"


def _value(v: object) -> str:
    return f"{v:,g}" if isinstance(v, float) else str(v)


def _threshold(t: Trigger) -> str:
    sign = ">=" if t.direction == "above" else "<"
    return f"{sign} {t.threshold:,.0f} {t.unit}" if t.threshold != float("inf") else "never"


def render_table(study: CostStudy) -> str:
    ps = study.projections
    head = f"{'':<14}" + "".join(f"{_scale(p.scale):>14}" for p in ps)
    rows = [
        f"K2 on AWS {study.model.prices.region}: list prices of "
        f"{study.model.prices.priced_on.isoformat()} (re-check before quoting)",
        "",
        head,
        f"{'msg/s':<14}" + "".join(f"{p.messages_per_second:>14,.0f}" for p in ps),
        f"{'USD/month':<14}" + "".join(f"{p.report.monthly_usd:>14,.2f}" for p in ps),
        f"{'USD/M msgs':<14}" + "".join(f"{p.report.usd_per_million_messages:>14,.4f}" for p in ps),
        "",
    ]
    for service in SERVICES:
        costs = (p.report.by_service()[service] for p in ps)
        rows.append(f"  {service:<12}" + "".join(f"{c:>14,.2f}" for c in costs))
    rows += ["", "Bottleneck:"]
    rows += [f"  {_scale(p.scale):>6}  {p.report.bottleneck}" for p in ps]
    rows += ["", "Triggers (at baseline):"]
    for t in study.triggers:
        state = "FIRED" if t.fired else "ok"
        rows.append(f"  [{state:>5}] {t.name}: {t.metric} {_threshold(t)}")
        rows.append(f"          {t.action}")
    return "\n".join(rows) + "\n"


def _md_table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def render_markdown(study: CostStudy) -> str:
    m, b, ps = study.model, study.baseline, study.projections
    region, on = m.prices.region, m.prices.priced_on.isoformat()
    at100 = next((p for p in ps if p.scale == 100), ps[-1])
    lines = [
        f"# K2 cost model: AWS {region}",
        "",
        "<!-- Generated by `k2 cost --write-doc docs/operations/cost-model.md` from "
        "k2lib.cost. Do not edit: tests/unit/test_cost_model.py fails when this file and "
        "the model disagree. -->",
        "",
        f"Prices are AWS on-demand **list prices for {region}, transcribed from the public "
        f"AWS pricing pages and recorded on {on}**. Each one names its page below. They were "
        "not fetched by a program and AWS changes them: re-check every page before you "
        "quote a number.",
        "",
        f"**At {_scale(at100.scale)}** ({at100.messages_per_second:,.0f} msg/s) K2 costs "
        f"**${at100.report.monthly_usd:,.0f} a month**, "
        f"${at100.report.usd_per_million_messages:.4f} per million messages. "
        f"What breaks first: {at100.report.bottleneck}.",
        "",
        "## Method",
        "",
        "- `k2lib.cost.CostModel` sizes every service from the workload (no price is read "
        "while sizing), then prices each line as quantity × unit price. The monthly total "
        "is the sum of the lines; each service's cost is the sum of its lines.",
        f"- A month is 730 hours ({SECONDS_PER_MONTH:,.0f} s), as AWS bills. USD per million "
        "messages = monthly USD / (msg/s × 2,628,000 / 1,000,000). GB and TB are binary "
        "(2^30 and 2^40 bytes), as AWS bills storage and transfer.",
        "- A scale of 10x is exactly 10 × the baseline msg/s; nothing else changes.",
        "- Storage is priced at steady state: the table full to its retention.",
        "- Brokers, consumers and Redis are sized for the peak (average × peak-to-average) "
        "and run on demand all month; commitments and Spot are left to the triggers. "
        "Second-long bursts above the peak become consumer lag, which Kafka absorbs.",
        "- The projections pay for the fixes that money buys (more partitions and consumers, "
        "Redis shards, brokers). Limits that need a design change are named as bottlenecks.",
        "",
        "### How each service is sized",
        "",
        *SIZING_RULES,
        "",
        f"**Baseline: {b.messages_per_second:,.0f} msg/s.** See "
        "docs/decisions/007-cost-model.md for why.",
        "",
        *_md_table(
            ["workload field", "baseline"], ([k, _value(v)] for k, v in b.as_dict().items())
        ),
        "",
        "## Projections",
        "",
        *_md_table(
            ["scale", "msg/s", "USD/month", "USD per million msgs"],
            (
                [
                    _scale(p.scale),
                    f"{p.messages_per_second:,.0f}",
                    f"{p.report.monthly_usd:,.2f}",
                    f"{p.report.usd_per_million_messages:.4f}",
                ]
                for p in ps
            ),
        ),
        "",
        "### Cost by service (USD/month)",
        "",
        *_md_table(
            ["service", *(_scale(p.scale) for p in ps)],
            ([s, *(f"{p.report.by_service()[s]:,.2f}" for p in ps)] for s in SERVICES),
        ),
        "",
        "### What breaks at each scale",
        "",
        "Limits of K2 as shipped, as demand / limit (1.0 = broken). The projections above "
        "already pay for the fixes that more money buys (partitions, shards, brokers).",
        "",
        *_md_table(
            ["scale", *(x.name for x in ps[0].report.deployment.pressures), "bottleneck"],
            (
                [
                    _scale(p.scale),
                    *(f"{x.ratio:.2f}" for x in p.report.deployment.pressures),
                    p.report.bottleneck,
                ]
                for p in ps
            ),
        ),
        "",
        "## Triggers",
        "",
        *_md_table(
            ["trigger", "fires when", "at baseline", "action"],
            (
                [t.name, f"{t.metric} {_threshold(t)}", f"{t.at_baseline:,.0f}", t.action]
                for t in study.triggers
            ),
        ),
        "",
        f"## Baseline line items ({_scale(ps[0].scale)})",
        "",
        *_md_table(
            ["service", "item", "quantity", "unit", "unit price (USD)", "USD/month"],
            (
                [
                    x.service,
                    x.item,
                    f"{x.quantity:,.2f}",
                    x.unit,
                    f"{x.unit_price:g}",
                    f"{x.usd:,.2f}",
                ]
                for x in ps[0].report.lines
            ),
        ),
        "",
        "## Inputs: measured or assumed",
        "",
        "`k2 cost --measured` replaces assumptions with this machine's `bench/results.json` "
        "and the live `market.trades` table; this page uses the deterministic defaults.",
        "",
        *_md_table(
            ["input", "value", "unit", "status", "source"],
            ([n, f"{i.value:,.2f}", i.unit, i.status, i.source] for n, i in m.inputs.items()),
        ),
        "",
        "## Sizing policy (assumed design choices)",
        "",
        *_md_table(["setting", "value"], ([n, _value(v)] for n, v in m.policy.items())),
        "",
        f"## Prices ({region})",
        "",
        *_md_table(
            ["price", "USD", "unit", "source", "priced on"],
            (
                [u.name, f"{u.usd:g}", u.unit, u.source_url, u.priced_on.isoformat()]
                for u in m.prices
            ),
        ),
        "",
        "Not priced: NAT gateways (S3 is reached through a gateway endpoint and the brokers "
        "in-VPC), MSK tiered-storage retrieval for replays, Athena's own S3 requests, support "
        "plans, taxes, free tiers other than those listed, and people. Cross-AZ consumer "
        "traffic is priced without fetch-from-follower (`client.rack`), which would remove "
        "most of it.",
        "",
    ]
    return "\n".join(lines)
