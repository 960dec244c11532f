"""Figures and widgets: what the notebooks draw. Nothing here runs a pipeline.

    from k2lib import viz
    from k2lib.demo import stories
    ctx = stories.demo_context()             # the stack up, settings from the environment
    run = stories.run_ingestion_demo(ctx)    # replay + ingest + checks against the truth
    viz.faults_figure(run.checks())          # a plotly figure

Modules: `charts` (ingest, storage), `charts_monitoring`, `charts_query`, `charts_cost`,
`diagrams` and `widgets`. The stories that compute what they show live in `k2lib.demo`,
which imports this package; this package never imports `k2lib.demo`.
"""

from k2lib.viz.charts import (
    capture_figure,
    dlq_figure,
    faults_figure,
    files_figure,
    pruning_figure,
    snapshot_figure,
    throughput_figure,
)
from k2lib.viz.charts_cost import cost_figure, scenario_figure, triggers_figure
from k2lib.viz.charts_monitoring import level_timeline_figure, metrics_figure, tier_figure
from k2lib.viz.charts_query import hybrid_figure
from k2lib.viz.diagrams import LATENCY_TIERS, architecture_figure, tiers_figure
from k2lib.viz.widgets import (
    ChaosControl,
    CostControl,
    LevelControl,
    QueryControl,
    TimeTravelControl,
    level_actions_lines,
    level_line,
)

__all__ = [
    "LATENCY_TIERS",
    "ChaosControl",
    "CostControl",
    "LevelControl",
    "QueryControl",
    "TimeTravelControl",
    "architecture_figure",
    "capture_figure",
    "cost_figure",
    "dlq_figure",
    "faults_figure",
    "files_figure",
    "hybrid_figure",
    "level_actions_lines",
    "level_line",
    "level_timeline_figure",
    "metrics_figure",
    "pruning_figure",
    "scenario_figure",
    "snapshot_figure",
    "throughput_figure",
    "tier_figure",
    "tiers_figure",
    "triggers_figure",
]
