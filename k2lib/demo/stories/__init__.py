"""The calls the notebooks make, one per cell. Each section lives in its own module:

- `k2lib.demo.context`  demo_context(), stack_status(): settings, the stack up, logs captured
- `ingest`   run_ingestion_demo(), run_capture_demo(): replay + ingest, vs the truth (01)
- `storage`  build_storage_demo(), snapshots, time travel, pruning, maintenance (02)
- `live`     LiveIngest: a running pipeline to degrade, load and break (03)
- `alerts`   AlertWatch: K2's alert rules evaluated by the stack's Prometheus (03)
- `query`    build_query_demo(), query_control(): the hybrid query (04)
- `cost`     cost_study(), cost_control(), measured_cost_study() (05)

Every function returns data plus the lines to print; the figures are in `k2lib.viz`.
"""

from k2lib.demo.context import DemoContext, demo_context, find_captures, stack_status
from k2lib.demo.stories.alerts import AlertWatch
from k2lib.demo.stories.cost import (
    CostScene,
    cost_control,
    cost_study,
    measured_cost_study,
    projection_lines,
    study_figure,
    trigger_lines,
    triggers_chart,
)
from k2lib.demo.stories.ingest import (
    DEFAULT_FAULTS,
    IngestionRun,
    capture_lines,
    read_dlq,
    run_capture_demo,
    run_ingestion_demo,
)
from k2lib.demo.stories.live import LiveConfig, LiveIngest, LiveResult
from k2lib.demo.stories.query import (
    QueryDemo,
    build_query_demo,
    catch_up,
    demo_figure,
    kafka_only_moment,
    query_control,
    query_line,
    query_window,
)
from k2lib.demo.stories.storage import (
    StorageDemo,
    build_storage_demo,
    data_files,
    partition_pruning,
    run_maintenance,
    snapshot_frame,
    snapshot_lines,
    time_travel,
    time_travel_control,
)

__all__ = [
    "DEFAULT_FAULTS",
    "AlertWatch",
    "CostScene",
    "DemoContext",
    "IngestionRun",
    "LiveConfig",
    "LiveIngest",
    "LiveResult",
    "QueryDemo",
    "StorageDemo",
    "build_query_demo",
    "build_storage_demo",
    "capture_lines",
    "catch_up",
    "cost_control",
    "cost_study",
    "data_files",
    "demo_context",
    "demo_figure",
    "find_captures",
    "kafka_only_moment",
    "measured_cost_study",
    "partition_pruning",
    "projection_lines",
    "query_control",
    "query_line",
    "query_window",
    "read_dlq",
    "run_capture_demo",
    "run_ingestion_demo",
    "run_maintenance",
    "snapshot_frame",
    "snapshot_lines",
    "stack_status",
    "study_figure",
    "time_travel",
    "time_travel_control",
    "trigger_lines",
    "triggers_chart",
]
