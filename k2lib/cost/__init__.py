"""The cost model: K2 priced on AWS from its own measured throughput, at 1x to 1000x.

    from k2lib.cost import CostModel, Workload, build_study, render_table
    model = CostModel()                       # ap-southeast-2 list prices, default inputs
    report = model.price(Workload(messages_per_second=10_000))
    report.monthly_usd, report.usd_per_million_messages, report.lines
    study = build_study(model, Workload())    # 1x/10x/100x/1000x plus triggers

Every line item is quantity × a dated unit price with its AWS pricing page; every input
says whether it was measured or assumed. See docs/operations/cost-model.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from k2lib.cost.measure import default_inputs, from_bench, from_table, measured_inputs
from k2lib.cost.model import DEFAULT_SCALES, CostModel
from k2lib.cost.prices import PRICED_ON, REFERENCE_REGION, REGIONS, PriceBook, UnitPrice, price_book
from k2lib.cost.report import CostStudy, build_study, render_markdown, render_table, to_json
from k2lib.cost.results import (
    SERVICES,
    CostReport,
    Deployment,
    LineItem,
    Pressure,
    Projection,
)
from k2lib.cost.triggers import Trigger, compute_triggers
from k2lib.cost.workload import SECONDS_PER_MONTH, Input, MeasuredInputs, SizingPolicy, Workload

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_SCALES",
    "PRICED_ON",
    "REFERENCE_REGION",
    "REGIONS",
    "SECONDS_PER_MONTH",
    "SERVICES",
    "CostModel",
    "CostReport",
    "CostStudy",
    "Deployment",
    "Input",
    "LineItem",
    "MeasuredInputs",
    "Pressure",
    "PriceBook",
    "Projection",
    "SizingPolicy",
    "Trigger",
    "UnitPrice",
    "Workload",
    "build_study",
    "compute_triggers",
    "cost_projection_frame",
    "default_inputs",
    "from_bench",
    "from_table",
    "measured_inputs",
    "price_book",
    "render_markdown",
    "render_table",
    "to_json",
]


def cost_projection_frame(
    source: CostStudy | CostReport | Iterable[Projection] | Mapping[str, Any],
) -> pd.DataFrame:
    """Long format (scale, service, usd) for stacked charts: one row per scale and service.

    Takes a `CostStudy`, a single `CostReport` (as scale 1), projections, or the JSON dict
    of `k2 cost --format json`.
    """
    import pandas as pd  # here, not at the top, so `k2 cost` starts without pandas

    rows: list[tuple[float, str, float]] = []
    if isinstance(source, CostStudy):
        source = source.projections
    if isinstance(source, CostReport):
        rows = [(1.0, s, usd) for s, usd in source.by_service().items()]
    elif isinstance(source, Mapping):
        for proj in source["projections"]:
            rows += [(float(proj["scale"]), s, float(u)) for s, u in proj["by_service"].items()]
    else:
        for p in source:
            rows += [(p.scale, s, usd) for s, usd in p.report.by_service().items()]
    return pd.DataFrame(rows, columns=["scale", "service", "usd"])
