"""Plotly figures for monitoring and degradation (notebook 03).

`metrics_figure` draws what a Prometheus scrape of the ingest's `/metrics` returned over
the run (one column per series, as `sampling.MetricsScraper` collects them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from k2lib.resilience import DegradationLevel
from k2lib.viz.charts import COLORS, TEMPLATE, layout, rates

__all__ = ["LEVEL_COLORS", "level_timeline_figure", "metrics_figure", "tier_figure"]

LEVEL_COLORS = {
    "NORMAL": "#2ca02c",
    "SOFT": "#bcbd22",
    "GRACEFUL": "#ff7f0e",
    "AGGRESSIVE": "#d62728",
    "CIRCUIT_BREAK": "#7f0000",
}
STAGE_COLORS = {"shed": "#ef553b", "deferred": "#ffa15a", "backfilled": "#00cc96"}
LEVEL_TICKS = {
    "tickvals": [int(lv) for lv in DegradationLevel],
    "ticktext": [lv.name for lv in DegradationLevel],
}


def _series(frame: pd.DataFrame, prefix: str) -> pd.Series:
    """Sum of every column of one metric (all label sets), 0 where absent."""
    cols = [c for c in frame.columns if c == prefix or c.startswith(prefix + "{")]
    if not cols:
        return pd.Series(0.0, index=frame.index)
    return frame[cols].fillna(0.0).sum(axis=1)


def metrics_figure(
    frame: pd.DataFrame,
    events: Sequence[tuple[float, str]] = (),
    title: str = "Prometheus metrics of the live ingest",
) -> go.Figure:
    """Four panels on one time axis: throughput, consumer lag, level, deferral counters."""
    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        subplot_titles=(
            "messages/s (rate of the counters)",
            "consumer lag (messages)",
            "degradation level",
            "records shed / deferred / backfilled (cumulative)",
        ),
    )
    if frame.empty:
        return fig.update_layout(template=TEMPLATE, title=title, height=760)
    f = frame.sort_values("t").reset_index(drop=True)
    counters = pd.DataFrame(
        {
            "t": f["t"],
            "consumed": _series(f, "k2_ingest_messages_consumed_total"),
            "written": _series(f, "k2_ingest_records_written_total"),
        }
    )
    r = rates(counters, ("consumed", "written"))

    def lines(row: int, name: str, x: pd.Series, y: pd.Series, **style: Any) -> None:
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines", **style), row=row, col=1)

    for col in ("consumed", "written"):
        lines(1, col, r["t"], r[col], line={"color": COLORS[col]})
    lag = _series(f, "k2_consumer_lag_messages")
    lines(2, "lag", f["t"], lag, fill="tozeroy", line={"color": "#636efa"})
    level = _series(f, "k2_degradation_level")
    lines(3, "level", f["t"], level, line={"shape": "hv", "color": "#d62728"})
    for stage in ("shed", "deferred", "backfilled"):
        total = _series(f, f"k2_{stage}_records_total")
        lines(4, stage, f["t"], total, line={"color": STAGE_COLORS[stage]})
    for t, label in events:
        fig.add_vline(x=t, line_dash="dot", line_color="#888")
        fig.add_annotation(
            x=t,
            y=1.0,
            yref="paper",
            text=label,
            showarrow=False,
            textangle=-90,
            xanchor="right",
            yanchor="top",
            font={"size": 10, "color": "#555"},
        )
    fig.update_yaxes(LEVEL_TICKS, range=[-0.3, 4.3], row=3, col=1)
    fig.update_xaxes(title_text="seconds since the ingest started", row=4, col=1)
    return layout(fig, title, height=760, margin=(110, 30, 80, 50), showlegend=True)


def level_timeline_figure(
    transitions: Sequence[Mapping[str, Any]],
    end_s: float,
    title: str = "Degradation level timeline",
) -> go.Figure:
    """The level as a step function, each change labelled with its reason and signal."""
    xs, ys, labels = [0.0], [0], ["start"]
    for t in transitions:
        xs.append(float(t["at_s"]))
        ys.append(int(DegradationLevel[t["to"]]))
        labels.append(f"{t['reason']}: {t['signal']}={t['value']}")
    xs.append(max(end_s, xs[-1]))
    ys.append(ys[-1])
    labels.append("end")
    fig = go.Figure(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            line={"shape": "hv", "width": 3, "color": "#444"},
            hoverinfo="skip",
            showlegend=False,
        )
    )
    names = [DegradationLevel(v).name for v in ys[1:-1]]
    fig.add_trace(
        go.Scatter(
            x=xs[1:-1],
            y=ys[1:-1],
            mode="markers+text",
            text=labels[1:-1],
            textposition="top right",
            showlegend=False,
            marker={"size": 11, "color": [LEVEL_COLORS[n] for n in names]},
        )
    )
    fig.update_yaxes(LEVEL_TICKS, range=[-0.4, 4.6])
    return layout(
        fig,
        title,
        height=360,
        margin=(110, 30, 60, 50),
        xaxis={"title": "seconds since the ingest started", "range": [0, xs[-1] * 1.2 + 0.1]},
    )


def tier_figure(
    tiers: Mapping[str, Any], title: str = "Shed, deferred and backfilled records by symbol tier"
) -> go.Figure:
    """Grouped bars per tier; equal deferred and backfilled bars mean nothing was lost."""
    keys = sorted(tiers.get("shed", {}))
    fig = go.Figure(
        [
            go.Bar(
                name=stage,
                x=[f"tier {k}" for k in keys],
                y=[tiers[stage][k] for k in keys],
                text=[f"{tiers[stage][k]:,}" for k in keys],
                marker_color=STAGE_COLORS[stage],
            )
            for stage in ("shed", "deferred", "backfilled")
        ]
    )
    return layout(fig, title, height=340, barmode="group", yaxis_title="records")
