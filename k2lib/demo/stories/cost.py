"""Notebook 05: what K2 costs on AWS, at 1x to 1000x, and where it must change.

`cost_study()` prices the baseline workload with the cost model's deterministic inputs
(the codec's record size; every other input a stated assumption), so its numbers are the
same on every machine and the committed doc can quote them. `measured_cost_study()` then
replaces the assumptions this machine can measure: it ingests a seeded feed on the live
stack, times it, and reads the Parquet bytes per row from the table it wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from k2lib.cost import (
    CostModel,
    CostStudy,
    Input,
    Workload,
    build_study,
    cost_projection_frame,
    from_table,
)
from k2lib.demo.context import DemoContext
from k2lib.demo.workspace import reset_workspace
from k2lib.feeds import open_source
from k2lib.feeds.publisher import replay
from k2lib.ingestion.pipeline import IngestConfig, IngestPipeline
from k2lib.ingestion.stages import Stages
from k2lib.monitoring import new_registry
from k2lib.viz.charts_cost import cost_figure, scenario_figure, triggers_figure
from k2lib.viz.widgets import CostControl

__all__ = [
    "CostScene",
    "cost_control",
    "cost_study",
    "measured_cost_study",
    "projection_lines",
    "study_figure",
    "trigger_lines",
    "triggers_chart",
]

MEASURE_RECORDS = 100_000


@dataclass(frozen=True)
class CostScene:
    study: CostStudy
    label: str
    notes: tuple[str, ...] = ()


def cost_study(workload: Workload | None = None) -> CostScene:
    """The baseline (10,000 msg/s unless given) and its 1x/10x/100x/1000x projections."""
    study = build_study(CostModel(), workload or Workload())
    return CostScene(study, "assumed inputs (deterministic)")


def projection_lines(scene: CostScene) -> list[str]:
    lines = []
    for p in scene.study.projections:
        r = p.report
        lines.append(
            f"{p.scale:>6g}x {p.messages_per_second:>12,.0f} msg/s  "
            f"${r.monthly_usd:>12,.2f}/month  ${r.usd_per_million_messages:.4f}/M msgs"
            f"  bottleneck: {r.bottleneck}"
        )
    return lines


def trigger_lines(scene: CostScene) -> list[str]:
    lines = []
    for t in scene.study.triggers:
        sign = ">=" if t.direction == "above" else "<"
        state = "FIRED" if t.fired else "ok"
        lines.append(
            f"[{state:>5}] {t.name}: {t.metric} {sign} {t.threshold:,.0f} {t.unit} "
            f"(baseline {t.at_baseline:,.0f})"
        )
    return lines


def study_figure(scene: CostScene) -> go.Figure:
    months = {p.scale: p.report.messages_per_month for p in scene.study.projections}
    return cost_figure(
        cost_projection_frame(scene.study),
        months,
        title=f"K2 on AWS {scene.study.model.prices.region} at 1x-1000x ({scene.label})",
    )


def triggers_chart(scene: CostScene) -> go.Figure:
    triggers = [
        {"name": t.name, "threshold": t.threshold, "unit": t.unit} for t in scene.study.triggers
    ]
    scales = {p.scale: p.messages_per_second for p in scene.study.projections}
    return triggers_figure(triggers, scales)


def cost_control(scene: CostScene) -> CostControl:
    """Sliders for scale (1x-1000x) and Iceberg retention (days); each move re-prices."""
    model, base = scene.study.model, scene.study.baseline

    def price(scale: float, days: int) -> tuple[Any, str]:
        report = model.price(base.with_(iceberg_retention_days=float(days)).scaled(scale))
        line = (
            f"{scale:g}x ({report.workload.messages_per_second:,.0f} msg/s), {days} days "
            f"in Iceberg: ${report.monthly_usd:,.2f}/month, "
            f"${report.usd_per_million_messages:.4f} per million messages; "
            f"bottleneck: {report.bottleneck}"
        )
        return scenario_figure(report.by_service(), f"{scale:g}x, {days}-day retention"), line

    return CostControl(price, scale=1.0, retention_days=int(base.iceberg_retention_days))


def measured_cost_study(
    ctx: DemoContext, *, records: int = MEASURE_RECORDS, seed: int = 9
) -> CostScene:
    """Measure this machine: one ingest process on one core, and the table it wrote."""
    ws = reset_workspace(ctx.settings, "cost")
    published = replay(open_source("synthetic", limit=records, seed=seed), ws.settings, seed=seed)
    pipeline = IngestPipeline.from_settings(
        ws.settings,
        registry=new_registry(),
        stages=Stages(),
        config=IngestConfig(commit_rows=10**9, commit_interval_s=3600.0),
    )
    summary = pipeline.run(max_messages=published["published"], until_idle_s=20.0)
    rate = summary["consumed"] / max(summary["elapsed_s"], 1e-9)
    ws.table.refresh()  # the pipeline committed through its own handle
    inputs = from_table(ws.table).with_(
        ingest_messages_per_core=Input(
            value=rate,
            unit="msg/s per core",
            status="measured",
            source=f"this notebook: {summary['consumed']:,} messages ingested by one process",
        )
    )
    study = build_study(CostModel(inputs=inputs), Workload())
    parquet = inputs.parquet_bytes_per_message.value
    notes = (
        f"measured here: ingest {rate:,.0f} msg/s on one core, Parquet {parquet:.1f} bytes per row",
    )
    return CostScene(study, "inputs measured on this machine", notes)
