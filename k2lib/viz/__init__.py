"""Figures, widgets and the one-call-per-cell story functions behind the notebooks.

    from k2lib import viz
    ctx = viz.demo_context()                 # the stack up, settings from the environment
    run = viz.run_ingestion_demo(ctx)        # replay + ingest + checks against the truth
    viz.faults_figure(run.checks())          # a plotly figure

Notebooks stay thin: everything they show is computed and drawn here, and tested here.
Modules: `charts` (ingest, storage), `charts_monitoring`, `charts_cost`, `diagrams`,
`widgets`, `sampling` (scrapes /metrics), `workspace` (per-notebook topic and table), and
`story` with its section modules.
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
from k2lib.viz.story import *  # noqa: F403 (the story's calls, listed in story.__all__)
from k2lib.viz.story import __all__ as _story_all
from k2lib.viz.story_alerts import AlertWatch
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
    "AlertWatch",
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
    *_story_all,
]
