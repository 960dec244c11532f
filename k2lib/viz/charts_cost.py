"""Plotly figures for the cost model (notebook 05)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from k2lib.viz.charts import layout

__all__ = ["SERVICE_COLORS", "cost_figure", "scenario_figure", "triggers_figure"]

SERVICE_COLORS = {
    "msk": "#636efa",
    "compute": "#ef553b",
    "elasticache": "#00cc96",
    "s3": "#ab63fa",
    "glue": "#ffa15a",
    "athena": "#19d3f3",
    "data_transfer": "#ff6692",
    "monitoring": "#b6e880",
}


def _scale_label(scale: float) -> str:
    return f"{scale:g}x"


def cost_figure(
    frame: pd.DataFrame,
    messages_per_month: Mapping[float, float],
    title: str = "K2 on AWS at 1x, 10x, 100x and 1000x",
) -> go.Figure:
    """Left: USD per million messages, stacked by service (the unit cost falls with scale).
    Right: USD per month (log axis), the bill itself.

    `frame` is `cost_projection_frame(...)`: columns scale, service, usd (per month)."""
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.6, 0.4],
        horizontal_spacing=0.12,
        subplot_titles=("USD per million messages, by service", "USD per month (log scale)"),
    )
    scales = sorted(frame["scale"].unique())
    labels = [_scale_label(s) for s in scales]
    millions = {s: messages_per_month[s] / 1e6 for s in scales}
    for service in frame["service"].unique():
        rows = frame[frame["service"] == service].set_index("scale")
        y = [float(rows["usd"].get(s, 0.0)) / millions[s] for s in scales]
        fig.add_trace(
            go.Bar(name=service, x=labels, y=y, marker_color=SERVICE_COLORS.get(service)),
            row=1,
            col=1,
        )
    totals = frame.groupby("scale")["usd"].sum()
    fig.add_trace(
        go.Bar(
            x=labels,
            y=[totals[s] for s in scales],
            showlegend=False,
            text=[f"${totals[s]:,.0f}" for s in scales],
            textposition="outside",
            marker_color="#444",
        ),
        row=1,
        col=2,
    )
    fig.update_yaxes(type="log", row=1, col=2)
    return layout(fig, title, height=430, margin=(60, 30, 80, 50), barmode="stack")


def scenario_figure(by_service: Mapping[str, float], title: str) -> go.Figure:
    """One scenario's monthly bill as a single stacked horizontal bar."""
    fig = go.Figure(
        [
            go.Bar(
                name=service,
                y=["USD/month"],
                x=[usd],
                orientation="h",
                marker_color=SERVICE_COLORS.get(service),
                text=[f"{service} ${usd:,.0f}"] if usd > 0 else None,
                textposition="inside",
            )
            for service, usd in by_service.items()
        ]
    )
    return layout(
        fig, title, height=220, margin=(80, 30, 60, 40), barmode="stack", showlegend=False
    )


def triggers_figure(
    triggers: Sequence[Mapping[str, Any]],
    scales: Mapping[float, float],
    title: str = "Where the architecture must change (message-rate triggers)",
) -> go.Figure:
    """Triggers on the message rate, on a log axis, against the projected scales."""
    rate = [t for t in triggers if t["unit"] == "msg/s"]
    fig = go.Figure(
        go.Scatter(
            x=[t["threshold"] for t in rate],
            y=[t["name"] for t in rate],
            mode="markers+text",
            text=[f"{t['threshold']:,.0f} msg/s" for t in rate],
            textposition="middle right",
            marker={"size": 12, "color": "#d62728", "symbol": "diamond"},
            showlegend=False,
        )
    )
    for scale, mps in scales.items():
        fig.add_vline(x=mps, line_dash="dot", line_color="#888")
        # on a log axis an annotation's x is log10 of the value
        fig.add_annotation(
            x=math.log10(mps),
            y=1.0,
            yref="paper",
            yanchor="bottom",
            text=f"{_scale_label(scale)}",
            showarrow=False,
        )
    values = [t["threshold"] for t in rate] + list(scales.values())
    low, high = min(values), max(values)
    fig.update_xaxes(
        type="log",
        title="messages per second",
        range=[math.log10(low) - 0.3, math.log10(high) + 0.6],
    )
    return layout(fig, title, height=320, margin=(220, 60, 80, 50))
