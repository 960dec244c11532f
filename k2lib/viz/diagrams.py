"""Notebook 00's pictures: the L1/L2/L3 latency tiers and K2's architecture, as plotly figures
(so they render in JupyterLab, in the HTML report and offline, with no image files)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import plotly.graph_objects as go

from k2lib.viz.charts import layout

__all__ = ["LATENCY_TIERS", "LatencyTier", "architecture_figure", "tiers_figure"]


@dataclass(frozen=True)
class LatencyTier:
    name: str
    label: str
    low_s: float
    high_s: float
    users: str
    built_with: str
    k2: bool


LATENCY_TIERS = (
    LatencyTier(
        "L1",
        "hot path",
        1e-7,
        1e-5,
        "execution, market making",
        "FPGA, kernel bypass, shared memory, co-location",
        False,
    ),
    LatencyTier(
        "L2",
        "warm path",
        1e-5,
        1e-2,
        "pre-trade risk, real-time P&L, routing",
        "C++/Java in-memory streaming",
        False,
    ),
    LatencyTier(
        "L3",
        "cold path",
        1e-1,
        6e1,
        "analytics, research, backtests, compliance",
        "Kafka + Iceberg + Python (K2)",
        True,
    ),
)
TIER_COLORS = {"L1": "#d62728", "L2": "#ff7f0e", "L3": "#2ca02c"}


def tiers_figure() -> go.Figure:
    """The three latency tiers on one log axis; K2 is the L3 band."""
    fig = go.Figure()
    for i, tier in enumerate(LATENCY_TIERS):
        y = len(LATENCY_TIERS) - i
        fig.add_trace(
            go.Scatter(
                x=[tier.low_s, tier.high_s],
                y=[y, y],
                mode="lines",
                line={"width": 26, "color": TIER_COLORS[tier.name]},
                name=f"{tier.name} {tier.label}",
                hovertext=tier.users,
                hoverinfo="text",
            )
        )
        verdict = "<b>K2 is here</b>" if tier.k2 else "not K2"
        # annotation x on a log axis is log10(seconds)
        at_right = tier.high_s >= 1.0  # the slowest band ends at the edge: text to its left
        fig.add_annotation(
            x=math.log10(tier.high_s if at_right else tier.low_s),
            y=y - 0.33,
            xanchor="right" if at_right else "left",
            showarrow=False,
            font={"size": 11},
            text=f"{verdict}: {tier.users} — {tier.built_with}",
        )
    ticks = [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 60]
    labels = [
        "100 ns",
        "1 µs",
        "10 µs",
        "100 µs",
        "1 ms",
        "10 ms",
        "100 ms",
        "1 s",
        "10 s",
        "1 min",
    ]
    fig.update_xaxes(
        type="log", tickvals=ticks, ticktext=labels, title="end-to-end latency", range=[-7.3, 2.0]
    )
    fig.update_yaxes(
        tickvals=[3, 2, 1],
        ticktext=[f"{t.name} {t.label}" for t in LATENCY_TIERS],
        range=[0.4, 3.4],
    )
    return layout(
        fig,
        "Latency tiers: K2 is an L3 platform",
        height=360,
        margin=(110, 30, 60, 50),
        showlegend=False,
    )


# name: (label, centre x, centre y, half width, colour): the data flow in ARCHITECTURE.md
_BOXES = {
    "feed": (
        "feed sources<br>Binance captures · CSV/Parquet<br>synthetic + faults",
        0.0,
        2.0,
        0.42,
        "#e5ecf6",
    ),
    "kafka": ("Kafka topic<br>market.trades<br>(keyed exchange:symbol)", 1.0, 2.0, 0.42, "#fde0c5"),
    "ingest": (
        "ingest pipeline<br>decode · validate · shed<br>dedup (Bloom → Redis)<br>"
        "sequence (Redis) · micro-batch",
        2.0,
        2.0,
        0.42,
        "#d5f5e3",
    ),
    "iceberg": (
        "Iceberg table<br>market.trades<br>offsets in every snapshot",
        3.0,
        2.0,
        0.42,
        "#d6eaf8",
    ),
    "dlq": ("DLQ topic<br>poison + reason", 2.0, 3.1, 0.42, "#fadbd8"),
    "metrics": ("Prometheus metrics<br>notebooks · Grafana", 3.0, 3.1, 0.42, "#ebdef0"),
    "degrade": (
        "degradation manager<br>NORMAL … CIRCUIT_BREAK<br>breakers · load shedder",
        2.0,
        0.95,
        0.42,
        "#fcf3cf",
    ),
    "query": (
        "hybrid query: Iceberg snapshot S ∪ Kafka from the offsets S recorded<br>"
        "one answer, each row once, with provenance · REST API · CLI · notebooks",
        2.0,
        -0.15,
        1.42,
        "#d1f2eb",
    ),
}
H = 0.36
# (from (x, y), to (x, y), label): edges drawn box edge to box edge
_ARROWS = [
    ((0.42, 2.0), (0.58, 2.0), "replay"),
    ((1.42, 2.0), (1.58, 2.0), "poll"),
    ((2.42, 2.0), (2.58, 2.0), "commit"),
    ((2.0, 2.0 + H), (2.0, 3.1 - H), "poison"),
    ((2.3, 2.0 + H), (2.7, 3.1 - H), "metrics"),
    ((2.0, 2.0 - H), (2.0, 0.95 + H), "signals ⇅ level"),
    ((1.0, 2.0 - H), (1.0, -0.15 + H), "tail from S's offsets"),
    ((3.0, 2.0 - H), (3.0, -0.15 + H), "snapshot S"),
]


def architecture_figure() -> go.Figure:
    """Boxes and arrows of the data flow; every box is a k2lib subpackage."""
    fig = go.Figure()
    for label, x, y, w, color in _BOXES.values():
        fig.add_shape(
            type="rect",
            x0=x - w,
            x1=x + w,
            y0=y - H,
            y1=y + H,
            fillcolor=color,
            line={"color": "#566573"},
            layer="below",
        )
        fig.add_annotation(x=x, y=y, text=label, showarrow=False, font={"size": 11})
    for (sx, sy), (ex, ey), text in _ARROWS:
        fig.add_annotation(
            x=ex,
            y=ey,
            ax=sx,
            ay=sy,
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            showarrow=True,
            arrowhead=3,
            arrowwidth=1.5,
            text="",
        )
        if text:
            vertical = abs(ex - sx) < abs(ey - sy)
            fig.add_annotation(
                x=(sx + ex) / 2 + (0.04 if vertical else 0),
                y=(sy + ey) / 2 + (0 if vertical else 0.07),
                xanchor="left" if vertical else "center",
                text=f"<i>{text}</i>",
                showarrow=False,
                font={"size": 10, "color": "#566573"},
            )
    fig.update_xaxes(visible=False, range=[-0.5, 3.5])
    fig.update_yaxes(visible=False, range=[-0.6, 3.55])
    return layout(fig, "K2 architecture (data flow)", height=540, margin=(10, 10, 50, 10))
