"""k2lib.viz: figures and widgets (and the story calls that feed them). No services."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from k2lib import viz
from k2lib.clock import ManualClock
from k2lib.cost import CostModel, Workload, build_study, cost_projection_frame
from k2lib.demo import stories
from k2lib.monitoring import new_registry
from k2lib.query.merge import tag_source
from k2lib.query.provenance import Provenance, QueryResult
from k2lib.resilience import DegradationLevel, DegradationManager
from k2lib.viz import charts, widgets
from k2lib.wire.schema import TradeBatch
from tests.helpers import tier3_counts

pytestmark = [pytest.mark.unit, pytest.mark.phase2]


def names(fig: go.Figure) -> list[str]:
    return [t.name for t in fig.data]


# -- ingestion and storage charts ---------------------------------------------------------


def test_rates_turn_counters_into_per_second_values() -> None:
    samples = pd.DataFrame({"t": [0.0, 1.0, 2.0, 3.0], "published": [0, 100, 300, 300]})
    r = charts.rates(samples, ("published",), window=1)
    assert r["published"].tolist() == [0.0, 100.0, 200.0, 0.0]


def test_throughput_figure_has_one_line_per_counter() -> None:
    samples = pd.DataFrame(
        {
            "t": [0.0, 0.5, 1.0],
            "published": [0, 50, 100],
            "consumed": [0, 40, 100],
            "written": [0, 0, 100],
        }
    )
    fig = viz.throughput_figure(samples)
    assert names(fig) == ["published", "consumed", "written"]
    assert fig.data[0].y[-1] == pytest.approx(100.0)
    assert all(len(t.x) == 0 for t in viz.throughput_figure(pd.DataFrame()).data)


def test_faults_figure_compares_found_with_injected() -> None:
    checks = {
        "duplicates dropped": (305, 305),
        "gaps open": (40, 41),
        "poison to DLQ": (21, 21),
        "rows stored": (29_959, 29_959),
    }
    fig = viz.faults_figure(checks)
    injected, found = fig.data
    assert list(injected.x) == ["duplicates dropped", "gaps open", "poison to DLQ"]
    assert list(injected.y) == [305, 41, 21]
    assert list(found.y) == [305, 40, 21]


def test_dlq_and_capture_figures() -> None:
    fig = viz.dlq_figure({"price must be > 0": 6, "wrong length": 9})
    assert list(fig.data[0].x) == [9, 6]
    fig = viz.capture_figure({"binance:ETHUSDT": 6106, "binance:BTCUSDT": 19904})
    assert list(fig.data[0].x) == ["binance:BTCUSDT", "binance:ETHUSDT"]
    empty = viz.capture_figure(None)
    assert "not found" in empty.layout.title.text


def test_snapshot_figure_shows_each_partitions_offset_per_snapshot() -> None:
    frame = pd.DataFrame(
        {
            "n": [1, 2],
            "total_rows": [10, 20],
            "kafka_offsets": [{0: 3, 1: 7}, {0: 6, 1: 14}],
        }
    )
    fig = viz.snapshot_figure(frame)
    assert names(fig) == ["partition 0 next offset", "partition 1 next offset", "total rows"]
    assert list(fig.data[1].y) == [7, 14]
    assert list(fig.data[2].y) == [10, 20]


def test_files_and_pruning_figures() -> None:
    files = pd.DataFrame(
        {
            "file": ["a", "b", "c"],
            "day": ["2024-08-08", "2024-08-09", "2024-08-09"],
            "rows": [10, 20, 30],
            "bytes": [1024, 2048, 4096],
        }
    )
    fig = viz.files_figure(files)
    assert names(fig) == ["exch_day=2024-08-08", "exch_day=2024-08-09"]
    assert list(fig.data[1].y) == [2.0, 4.0]
    fig = viz.pruning_figure(
        {"symbol": "BTCUSDT", "day": "2024-08-09", "files_total": 4, "files_planned": 2}
    )
    assert list(fig.data[0].y) == [4, 2]


def test_diagrams_are_deterministic() -> None:
    assert viz.tiers_figure().to_json() == viz.tiers_figure().to_json()
    assert [t.name for t in viz.LATENCY_TIERS] == ["L1", "L2", "L3"]
    assert [t.k2 for t in viz.LATENCY_TIERS] == [False, False, True]
    arch = viz.architecture_figure()
    assert len(arch.layout.shapes) == 8
    assert any("hybrid query" in a.text for a in arch.layout.annotations)


# -- monitoring, query and cost charts ----------------------------------------------------


def test_metrics_figure_reads_scraped_series() -> None:
    frame = pd.DataFrame(
        {
            "t": [0.0, 1.0, 2.0],
            "k2_ingest_messages_consumed_total": [0, 1000, 3000],
            "k2_ingest_records_written_total": [0, 0, 3000],
            "k2_consumer_lag_messages": [0, 500, 0],
            "k2_degradation_level": [0, 2, 0],
            'k2_shed_records_total{tier="3"}': [0, 10, 10],
            'k2_shed_records_total{tier="2"}': [0, 5, 5],
        }
    )
    fig = viz.metrics_figure(frame, events=[(1.0, "burst")])
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["level"].y) == [0, 2, 0]
    assert list(by_name["shed"].y) == [0, 15, 15]  # tiers summed
    assert list(by_name["backfilled"].y) == [0, 0, 0]  # absent series -> zeros
    assert by_name["consumed"].y[-1] == pytest.approx(1500.0)  # smoothed rate
    assert any(a.text == "burst" for a in fig.layout.annotations)


def test_level_timeline_is_a_step_through_each_transition() -> None:
    transitions = [
        {
            "at_s": 1.0,
            "to": "GRACEFUL",
            "reason": "forced",
            "signal": "override",
            "value": "GRACEFUL",
        },
        {"at_s": 4.0, "to": "SOFT", "reason": "recover", "signal": "lag_messages", "value": 3},
    ]
    fig = viz.level_timeline_figure(transitions, end_s=9.0)
    assert list(fig.data[0].x) == [0.0, 1.0, 4.0, 9.0]
    assert list(fig.data[0].y) == [0, 2, 1, 1]
    assert list(fig.data[1].text) == ["forced: override=GRACEFUL", "recover: lag_messages=3"]


def test_tier_figure_groups_stages_by_tier() -> None:
    fig = viz.tier_figure(tier3_counts(shed=7, deferred=9, backfilled=9))
    assert names(fig) == ["shed", "deferred", "backfilled"]
    assert list(fig.data[1].y) == [0, 0, 9]


def _result(sources: list[str], *, requested: str = "hybrid") -> QueryResult:
    n = len(sources)
    batch = TradeBatch.from_columns(
        exchange=["synth"] * n,
        symbol=["BTCUSDT"] * n,
        seq=list(range(n)),
        exch_ts=[1_000_000_000 + i * 60_000_000 for i in range(n)],
        recv_ts=[1_000_000_000 + i * 60_000_000 for i in range(n)],
        price=[6_000_000_000_000 + i for i in range(n)],
        qty=[100_000_000] * n,
        side=[1] * n,
    )
    table = tag_source(batch.to_arrow(), "iceberg")
    table = table.set_column(table.schema.get_field_index("source"), "source", [sources])
    counts = {s: sources.count(s) for s in ("iceberg", "kafka")}
    prov = Provenance(
        source=requested,
        requested_source=requested,
        mode="offset",
        table="demo.query",
        topic="t",
        snapshot_id=1,
        offsets_snapshot_id=1,
        snapshot_committed_ms=None,
        seam={1: 42, 0: -2},
        high_watermarks={1: 50},
        partitions=(0, 1),
        rows_by_source=counts,
        latency_ms={"total": 12.5},
    )
    return QueryResult(table, prov)


def test_hybrid_figure_colours_rows_by_source_and_marks_the_seam() -> None:
    result = _result(["iceberg", "iceberg", "kafka"])
    anchor = 1_000_000_000 + 3 * 60_000_000
    fig = viz.hybrid_figure(
        result, anchor_us=anchor, seam_us=anchor - 60_000_000, symbol="BTCUSDT", minutes=5
    )
    assert names(fig) == ["iceberg (2)", "kafka (1)"]
    assert list(fig.data[0].x) == [-3.0, -2.0]
    assert fig.data[1].y[0] == pytest.approx(60_000.00000002)
    assert fig.layout.shapes[0].x0 == -1.0  # the seam
    line = stories.query_line(result, "BTCUSDT", 5)
    assert "3 rows = 2 from Iceberg + 1 from Kafka" in line
    assert "offsets p0:start p1:42" in line


def test_hybrid_figure_draws_one_in_k_trades_of_a_big_answer() -> None:
    result = _result(["iceberg"] * 6 + ["kafka"] * 4)
    fig = viz.hybrid_figure(
        result, anchor_us=0, seam_us=None, symbol="BTCUSDT", minutes=60, max_points=3
    )
    assert names(fig) == ["iceberg (6)", "kafka (4)"]  # the legend keeps exact counts
    assert [len(t.x) for t in fig.data] == [2, 1]  # rows 0, 4 and 8 drawn
    assert "(1 in 4 trades drawn)" in fig.layout.title.text


def test_cost_figures_stack_every_service() -> None:
    study = build_study(CostModel(), Workload())
    frame = cost_projection_frame(study)
    months = {p.scale: p.report.messages_per_month for p in study.projections}
    fig = viz.cost_figure(frame, months)
    stacked = [t for t in fig.data if t.showlegend is not False]
    assert {t.name for t in stacked} == set(frame["service"])
    totals = fig.data[-1]
    assert list(totals.y) == pytest.approx([p.report.monthly_usd for p in study.projections])
    per_million = sum(np.array(t.y) for t in stacked)
    assert per_million == pytest.approx(
        [p.report.usd_per_million_messages for p in study.projections]
    )
    scene = stories.cost_study()
    assert len(stories.projection_lines(scene)) == 4
    assert len(stories.trigger_lines(scene)) == len(scene.study.triggers)
    chart = stories.triggers_chart(scene)
    assert all(t > 0 for t in chart.data[0].x)


# -- widgets --------------------------------------------------------------------------------


def stdout_of(output: Any) -> str:
    return "".join(o.get("text", "") for o in output.outputs)


def test_level_control_forces_the_manager_and_shows_what_it_reports() -> None:
    manager = DegradationManager(clock=ManualClock(), registry=new_registry())
    control = viz.LevelControl(manager)
    assert "level NORMAL (from signals)" in stdout_of(control.output)
    line = control.choose("GRACEFUL")
    assert manager.level is DegradationLevel.GRACEFUL and manager.forced
    assert line.startswith("level GRACEFUL (forced): tiers 1-2")
    assert stdout_of(control.output).strip() == line
    control.buttons.value = "CIRCUIT_BREAK"  # what a click in the browser does
    assert manager.level is DegradationLevel.CIRCUIT_BREAK
    assert "consumption paused" in stdout_of(control.output)
    assert control.choose("auto").startswith("level CIRCUIT_BREAK (from signals)")
    assert not manager.forced
    with pytest.raises(ValueError):
        control.choose("PANIC")


def test_level_actions_lines_cover_every_level() -> None:
    lines = widgets.level_actions_lines()
    assert len(lines) == 1 + len(DegradationLevel)
    assert lines[-1].split()[:4] == ["CIRCUIT_BREAK", "1x", "1x", "none"]


def test_chaos_control_runs_the_picked_action() -> None:
    calls: list[str] = []
    control = viz.ChaosControl(
        {
            "burst": lambda: calls.append("b") or "sent 10",
            "redis outage": lambda: calls.append("r") or "down 4s",
        }
    )
    assert control.trigger("redis outage") == "redis outage: down 4s"
    assert calls == ["r"] and control.picker.value == "redis outage"
    assert not control.button.disabled
    assert "redis outage: down 4s" in stdout_of(control.output)
    with pytest.raises(ValueError):
        viz.ChaosControl({})


def test_query_control_runs_one_query_per_update() -> None:
    calls: list[tuple[str, int, str]] = []

    def run(symbol: str, minutes: int, source: str) -> tuple[go.Figure, str]:
        calls.append((symbol, minutes, source))
        return go.Figure(), f"{symbol} {minutes} {source}"

    control = viz.QueryControl(run, ["BTCUSDT", "ETHUSDT"])
    assert calls == [("BTCUSDT", 15, "hybrid")]
    assert control.update(symbol="ETHUSDT", window=60, source="realtime") == "ETHUSDT 60 realtime"
    assert len(calls) == 2
    control.window.value = 5  # a slider move
    assert calls[-1] == ("ETHUSDT", 5, "realtime")
    kinds = [o["output_type"] for o in control.output.outputs]
    assert kinds == ["stream", "display_data"]
    assert "application/vnd.plotly.v1+json" in control.output.outputs[1]["data"]
    assert (control.window.min, control.window.max) == (1, 60)


def test_cost_control_reprices_on_each_move() -> None:
    control = stories.cost_control(stories.cost_study())
    line = control.update(scale=100, retention_days=90)
    assert line.startswith("100x (1,000,000 msg/s), 90 days in Iceberg: $")
    expected = CostModel().price(Workload(iceberg_retention_days=90.0).scaled(100))
    assert f"${expected.monthly_usd:,.2f}/month" in line


def test_time_travel_control_reads_the_chosen_snapshot() -> None:
    control = viz.TimeTravelControl(lambda n: f"snapshot #{n}", 3)
    assert control.line == "snapshot #3"
    assert control.choose(1) == "snapshot #1"
    assert stdout_of(control.output) == "snapshot #1\n"
