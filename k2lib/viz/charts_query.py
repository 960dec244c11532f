"""The hybrid query's figure (notebook 04): rows coloured by the source that served them."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.compute as pc

from k2lib.query.provenance import QueryResult
from k2lib.viz.charts import COLORS, layout

__all__ = ["MINUTE_US", "hybrid_figure"]

MINUTE_US = 60_000_000
# A 900-pixel chart cannot show 30,000 markers apart, and every point is stored in the
# notebook: beyond this many, every k-th trade is drawn (the legend keeps the exact counts).
MAX_POINTS = 3_000


def hybrid_figure(
    result: QueryResult,
    *,
    anchor_us: int,
    seam_us: int | None,
    symbol: str,
    minutes: int,
    max_points: int = MAX_POINTS,
) -> go.Figure:
    """Each trade's price over time (minutes before `anchor_us`), one colour per source;
    a dashed line at the seam, where Iceberg ends and the Kafka tail begins."""
    rows = result.rows
    fig = go.Figure()
    stride = max(1, -(-rows.num_rows // max_points))
    if rows.num_rows:
        ts = pc.cast(rows.column("exch_ts"), "int64").to_numpy()
        sources = np.asarray(rows.column("source").to_pylist())
        prices = pc.cast(rows.column("price"), pa.float64()).to_numpy()
        drawn = np.zeros(rows.num_rows, bool)
        drawn[::stride] = True
        for source in ("iceberg", "kafka"):
            mask = sources == source
            if mask.any():
                shown = mask & drawn
                fig.add_trace(
                    go.Scattergl(
                        x=np.round((ts[shown] - anchor_us) / MINUTE_US, 5),
                        y=prices[shown],
                        mode="markers",
                        name=f"{source} ({int(mask.sum()):,})",
                        marker={"size": 3 if stride == 1 else 4, "color": COLORS[source]},
                    )
                )
    if seam_us is not None and -minutes <= (seam_us - anchor_us) / MINUTE_US < 0:
        fig.add_vline(
            x=(seam_us - anchor_us) / MINUTE_US,
            line_dash="dash",
            line_color="black",
            annotation_text="seam: snapshot S's offsets",
            annotation_position="top",
        )
    p = result.provenance
    title = (
        f"{symbol}, last {minutes} min, source={p.requested_source}: {len(result):,} "
        f"rows, {p.duplicates_removed} duplicates removed, "
        f"{p.latency_ms.get('total', 0.0):.0f} ms"
        + (f" (1 in {stride} trades drawn)" if stride > 1 else "")
    )
    return layout(
        fig,
        title,
        height=420,
        margin=(60, 30, 80, 50),
        xaxis={"title": "minutes before now (the feed's anchor)", "range": [-minutes, 0]},
        yaxis_title="price",
    )
