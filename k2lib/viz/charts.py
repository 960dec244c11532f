"""Plotly figures for ingestion and storage (notebooks 01 and 02).

Every function takes plain data (frames, dicts, the story's result objects) and returns a
`go.Figure` whose content depends only on that data: no random ids, no wall clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go

__all__ = [
    "COLORS",
    "TEMPLATE",
    "capture_figure",
    "dlq_figure",
    "faults_figure",
    "files_figure",
    "layout",
    "pruning_figure",
    "rates",
    "snapshot_figure",
    "throughput_figure",
]

TEMPLATE = "plotly_white"
COLORS = {
    "published": "#636efa",
    "consumed": "#00cc96",
    "written": "#ab63fa",
    "injected": "#b6b6b6",
    "found": "#00cc96",
    "iceberg": "#1f77b4",
    "kafka": "#ff7f0e",
    "bad": "#ef553b",
}
PARTITION_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def layout(
    fig: go.Figure,
    title: str,
    *,
    height: int = 380,
    margin: tuple[int, int, int, int] = (60, 30, 60, 50),
    **extra: Any,
) -> go.Figure:
    """The look K2's figures share: the template, `title`, `height` and `margin` (left,
    right, top, bottom), and any other `extra` layout properties."""
    left, right, top, bottom = margin
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        height=height,
        margin={"l": left, "r": right, "t": top, "b": bottom},
        **extra,
    )
    return fig


def rates(samples: pd.DataFrame, columns: tuple[str, ...], window: int = 3) -> pd.DataFrame:
    """Counters sampled over time -> per-second rates (smoothed over `window` samples)."""
    if samples.empty or "t" not in samples:
        return pd.DataFrame(columns=["t", *columns])
    frame = samples.sort_values("t").reset_index(drop=True)
    dt = frame["t"].diff()
    out = pd.DataFrame({"t": frame["t"]})
    for col in columns:
        if col in frame:
            rate = (frame[col].diff() / dt).where(dt > 0)
            out[col] = rate.rolling(window, min_periods=1).mean().fillna(0.0)
    return out


def throughput_figure(
    samples: pd.DataFrame,
    columns: tuple[str, ...] = ("published", "consumed", "written"),
    title: str = "Live throughput: messages per second",
) -> go.Figure:
    """Published, consumed and committed rates over the run."""
    frame = rates(samples, columns)
    fig = go.Figure()
    for col in columns:
        if col in frame:
            fig.add_trace(
                go.Scatter(
                    x=frame["t"],
                    y=frame[col],
                    name=col,
                    mode="lines",
                    line={"color": COLORS.get(col), "shape": "hv"},
                )
            )
    return layout(fig, title, xaxis_title="seconds since start", yaxis_title="messages/s")


def faults_figure(
    checks: Mapping[str, tuple[int, int]], title: str = "What K2 found vs what was injected"
) -> go.Figure:
    """Grouped bars, injected (truth) next to found, one group per fault kind."""
    names = [n for n in checks if n != "rows stored"]
    injected = [checks[n][1] for n in names]
    found = [checks[n][0] for n in names]
    fig = go.Figure(
        [
            go.Bar(
                name="injected (truth)",
                x=names,
                y=injected,
                text=injected,
                marker_color=COLORS["injected"],
            ),
            go.Bar(name="found by K2", x=names, y=found, text=found, marker_color=COLORS["found"]),
        ]
    )
    return layout(fig, title, barmode="group", yaxis_title="count")


def dlq_figure(reasons: Mapping[str, int], title: str = "Dead-letter queue by reason") -> go.Figure:
    items = sorted(reasons.items(), key=lambda kv: -kv[1])
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in items],
            y=[k for k, _ in items],
            orientation="h",
            text=[v for _, v in items],
            marker_color=COLORS["bad"],
        )
    )
    return layout(fig, title, xaxis_title="messages", height=260, yaxis={"automargin": True})


def capture_figure(
    by_key: Mapping[str, int] | None,
    title: str = "Real Binance captures: rows stored per venue and symbol",
) -> go.Figure:
    """Rows per `exchange:symbol`; `None` (no captures on this machine) draws an empty chart."""
    by_key = by_key or {}
    if not by_key:
        title += " (captures not found: synthetic only)"
    keys = sorted(by_key)
    fig = go.Figure(
        go.Bar(
            x=keys,
            y=[by_key[k] for k in keys],
            text=[f"{by_key[k]:,}" for k in keys],
            marker_color=COLORS["iceberg"],
        )
    )
    return layout(fig, title, yaxis_title="rows", height=320)


def snapshot_figure(
    frame: pd.DataFrame, title: str = "Snapshots and the Kafka offsets each one recorded"
) -> go.Figure:
    """Per snapshot: the next offset of every partition (bars) and the table's rows (line)."""
    fig = go.Figure()
    if frame.empty:
        return layout(fig, title)
    labels = [f"#{n}" if pd.notna(n) else "?" for n in frame["n"]]
    partitions = sorted({p for offs in frame["kafka_offsets"] for p in offs})
    for i, p in enumerate(partitions):
        values = [offs.get(p, 0) for offs in frame["kafka_offsets"]]
        fig.add_trace(
            go.Bar(
                name=f"partition {p} next offset",
                x=labels,
                y=values,
                text=values,
                marker_color=PARTITION_COLORS[i % 6],
            )
        )
    fig.add_trace(
        go.Scatter(
            name="total rows",
            x=labels,
            y=frame["total_rows"],
            mode="lines+markers+text",
            text=frame["total_rows"],
            textposition="top center",
            yaxis="y2",
            line={"color": "black"},
        )
    )
    return layout(
        fig,
        title,
        barmode="group",
        xaxis_title="snapshot",
        yaxis_title="next Kafka offset",
        yaxis2={
            "title": "rows in table",
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
        },
        legend={"orientation": "h", "y": -0.25},
        height=420,
    )


def files_figure(files: pd.DataFrame, title: str = "Data files: size and partition") -> go.Figure:
    fig = go.Figure()
    for i, (day, group) in enumerate(files.groupby("day", sort=True)):
        fig.add_trace(
            go.Bar(
                name=f"exch_day={day}",
                x=group["file"],
                y=group["bytes"] / 1024,
                text=[f"{r:,} rows" for r in group["rows"]],
                marker_color=PARTITION_COLORS[i % 6],
            )
        )
    return layout(fig, title, xaxis_title="data file", yaxis_title="KiB", height=340)


def pruning_figure(
    result: Mapping[str, Any], title: str = "Partition pruning: files a one-day query opens"
) -> go.Figure:
    x = ["all data files", f"{result['symbol']} on {result['day']}"]
    y = [result["files_total"], result["files_planned"]]
    fig = go.Figure(go.Bar(x=x, y=y, text=y, marker_color=[COLORS["injected"], COLORS["found"]]))
    return layout(fig, title, yaxis_title="files", height=300)
