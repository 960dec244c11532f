"""k2lib.viz: figures, widgets, the story's pure parts and the demo runner. No services."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from click.testing import CliRunner
from prometheus_client import Counter, Gauge, generate_latest

from k2lib import viz
from k2lib.clock import ManualClock
from k2lib.cost import CostModel, Workload, build_study, cost_projection_frame
from k2lib.monitoring import new_registry
from k2lib.query.merge import tag_source
from k2lib.query.provenance import Provenance, QueryResult
from k2lib.resilience import DegradationLevel, DegradationManager
from k2lib.viz import charts, sampling, widgets, workspace
from k2lib.viz.context import find_captures
from k2lib.viz.story_ingest import IngestionRun
from k2lib.viz.story_live import LiveResult
from k2lib.wire.schema import TradeBatch

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
    tiers = {
        "shed": {"1": 0, "2": 0, "3": 7},
        "deferred": {"1": 0, "2": 0, "3": 9},
        "backfilled": {"1": 0, "2": 0, "3": 9},
        "pending": 0,
    }
    fig = viz.tier_figure(tiers)
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
    line = viz.query_line(result, "BTCUSDT", 5)
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
    scene = viz.cost_study()
    assert len(viz.projection_lines(scene)) == 4
    assert len(viz.trigger_lines(scene)) == len(scene.study.triggers)
    chart = viz.triggers_chart(scene)
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
    control = viz.cost_control(viz.cost_study())
    line = control.update(scale=100, retention_days=90)
    assert line.startswith("100x (1,000,000 msg/s), 90 days in Iceberg: $")
    expected = CostModel().price(Workload(iceberg_retention_days=90.0).scaled(100))
    assert f"${expected.monthly_usd:,.2f}/month" in line


def test_time_travel_control_reads_the_chosen_snapshot() -> None:
    control = viz.TimeTravelControl(lambda n: f"snapshot #{n}", 3)
    assert control.line == "snapshot #3"
    assert control.choose(1) == "snapshot #1"
    assert stdout_of(control.output) == "snapshot #1\n"


# -- the story's pure parts -----------------------------------------------------------------


def ingestion_run(**table: int) -> IngestionRun:
    truth = {
        "messages": 1030,
        "unique_records": 1000,
        "duplicates_total": 20,
        "poison": 10,
        "gap_records": 2,
        "gap_count": 2,
        "reordered": 5,
        "gaps": [
            {"exchange": "x", "symbol": "S", "first": 5, "last": 5},
            {"exchange": "x", "symbol": "S", "first": 9, "last": 9},
        ],
    }
    return IngestionRun(
        "synthetic",
        {"rate_msg_s": 100.0},
        {"duplicates": 20, "consumed": 1030, "elapsed_s": 1.0, "rate_msg_s": 1030.0, "commits": 2},
        truth,
        {"price must be > 0": 10},
        {"rows": 1000, "unique_keys": 1000, "duplicate_rows": 0, **table},
        {"x:S": 1000},
        pd.DataFrame(),
        [
            {"exchange": "x", "symbol": "S", "first": 9, "last": 9},
            {"exchange": "x", "symbol": "S", "first": 5, "last": 5},
        ],
    )


def test_ingestion_run_compares_with_the_truth() -> None:
    run = ingestion_run()
    assert run.checks()["duplicates dropped"] == (20, 20)
    assert run.checks()["gaps open"] == (2, 2)
    assert all(line.endswith("ok") for line in run.found_lines())
    assert run.gaps_match and run.exactly_once
    assert run.exactly_once_line().endswith("exactly once: yes")
    twice = ingestion_run(rows=1001, duplicate_rows=1)
    assert not twice.exactly_once and twice.exactly_once_line().endswith("NO")


def test_live_result_verdicts() -> None:
    tiers = {
        "shed": {"1": 0, "2": 0, "3": 5},
        "deferred": {"1": 0, "2": 0, "3": 8},
        "backfilled": {"1": 0, "2": 0, "3": 8},
        "pending": 0,
    }
    result = LiveResult(
        sent_unique=100,
        check={"rows": 100, "unique_keys": 100, "duplicate_rows": 0, "exactly_once": True},
        summary={},
        metrics=pd.DataFrame(),
        transitions=[],
        tiers=tiers,
        settled=True,
        duration_s=3.0,
        events=[],
    )
    assert result.shedding_balanced
    assert result.lines()[1:] == [
        "exactly once: yes",
        "every deferred record (shed, or held while Redis was out) backfilled: yes",
        "back to NORMAL with an empty spill: yes",
    ]
    unbalanced = {**tiers, "backfilled": {"1": 0, "2": 0, "3": 7}}
    assert not LiveResult(**{**result.__dict__, "tiers": unbalanced}).shedding_balanced


def test_generation_counter_is_kept_under_k2_home(tmp_path: Path) -> None:
    from k2lib.config import K2Settings

    settings = K2Settings(home=tmp_path)
    assert workspace._bump_generation(settings, "ingest") == 1
    assert workspace._bump_generation(settings, "ingest") == 2
    assert workspace._bump_generation(settings, "storage") == 1
    assert (tmp_path / "demo" / "ingest.generation").read_text() == "2"
    assert workspace._topic("ingest", 2) == "demo.ingest.g2"


def test_find_captures_prefers_k2_shared_data(tmp_path: Path) -> None:
    (tmp_path / "binance").mkdir()
    (tmp_path / "binance" / "spot_x.gz").write_bytes(b"")
    assert find_captures({"K2_SHARED_DATA": str(tmp_path)}) == tmp_path / "binance"


# -- sampling -----------------------------------------------------------------------------


def test_sampler_records_rows_on_its_clock() -> None:
    clock = ManualClock()
    values = iter([{"n": 1.0}, {"n": 2.0}])
    sampler = sampling.Sampler(lambda: next(values), clock=clock)
    sampler.take()
    clock.advance(0.5)
    sampler.take()
    sampler.take()  # the source is exhausted: a failed sample is skipped, not raised
    assert sampler.frame().to_dict("list") == {"t": [0.0, 0.5], "n": [1.0, 2.0]}


def test_scrape_parses_the_exposition_format(tmp_path: Path) -> None:
    registry = new_registry()
    Counter("k2_demo_records", "r", ["tier"], registry=registry).labels("3").inc(7)
    Gauge("k2_demo_level", "l", registry=registry).set(2)
    path = tmp_path / "metrics.txt"
    path.write_bytes(generate_latest(registry))
    got = sampling.scrape(path.as_uri())
    assert got == {'k2_demo_records_total{tier="3"}': 7.0, "k2_demo_level": 2.0}
    assert sampling.scrape(path.as_uri(), ["k2_demo_level"]) == {"k2_demo_level": 2.0}


# -- the demo runner and `k2 demo` ----------------------------------------------------------


def test_find_notebooks_in_story_order(tmp_path: Path) -> None:
    from k2lib.demo import find_notebooks

    for name in ("01_ingestion", "00_positioning"):
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / f"{name}.ipynb")
    found = find_notebooks(tmp_path, ["ingestion", "00_positioning.ipynb"])
    assert [p.stem for p in found] == ["01_ingestion", "00_positioning"]
    with pytest.raises(FileNotFoundError):
        find_notebooks(tmp_path, ["05_cost"])


def test_run_demo_executes_and_writes_an_offline_report(tmp_path: Path) -> None:
    from k2lib.demo import run_demo

    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("print('hello from the demo')"),
            nbformat.v4.new_code_cell("from k2lib import viz\nviz.tiers_figure()"),
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    src = tmp_path / "nbs"
    src.mkdir()
    nbformat.write(nb, src / "00_positioning.ipynb")
    report = run_demo(src, tmp_path / "out", names=["00_positioning"])
    assert report.ok, report.runs
    executed = nbformat.read(tmp_path / "out" / "executed" / "00_positioning.ipynb", 4)
    assert executed.cells[0].outputs[0]["text"] == "hello from the demo\n"
    page = (tmp_path / "out" / "00_positioning.html").read_text()
    assert '<script src="plotly.min.js"></script>' in page
    assert "plotly-graph-div" in page
    assert (tmp_path / "out" / "plotly.min.js").stat().st_size > 1_000_000
    index = report.index.read_text()
    assert "00_positioning.html" in index and "budget" in index
    assert json.loads(json.dumps(report.lines()))[-1].startswith("total ")


def test_k2_demo_help() -> None:
    from k2lib.cli.main import cli

    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0
    assert "--out" in result.output and "--notebooks" in result.output
