"""k2lib.demo: the stories' pure parts, the workspace, sampling and the demo runner. No services."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from click.testing import CliRunner
from prometheus_client import Counter, Gauge, generate_latest

from k2lib.clock import ManualClock
from k2lib.demo import sampling, workspace
from k2lib.demo.context import find_captures
from k2lib.demo.stories.ingest import IngestionRun
from k2lib.demo.stories.live import LiveResult
from k2lib.monitoring import new_registry
from tests.helpers import tier3_counts

pytestmark = [pytest.mark.unit, pytest.mark.phase2]


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
    tiers = tier3_counts(shed=5, deferred=8, backfilled=8)
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
    unbalanced = tier3_counts(shed=5, deferred=8, backfilled=7)
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
