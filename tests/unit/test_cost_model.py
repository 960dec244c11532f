"""The cost model: unit consistency, line-item arithmetic, scaling, prices, inputs, doc, CLI."""

from __future__ import annotations

import builtins
import itertools
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from k2lib.cli.cost import command
from k2lib.cost import (
    DEFAULT_SCALES,
    PRICED_ON,
    REGIONS,
    SECONDS_PER_MONTH,
    SERVICES,
    CostModel,
    CostStudy,
    Input,
    MeasuredInputs,
    SizingPolicy,
    Workload,
    build_study,
    cost_projection_frame,
    default_inputs,
    from_bench,
    from_table,
    price_book,
    render_markdown,
    to_json,
)
from k2lib.cost.measure import wire_bytes_per_message
from k2lib.errors import CostModelError

pytestmark = [pytest.mark.unit, pytest.mark.phase2]

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "operations" / "cost-model.md"


@pytest.fixture(scope="module")
def model() -> CostModel:
    return CostModel(price_book(), default_inputs())


@pytest.fixture(scope="module")
def study(model: CostModel) -> CostStudy:
    return build_study(model, Workload())


# -- units and arithmetic ------------------------------------------------------------------


def test_a_month_is_730_hours() -> None:
    assert SECONDS_PER_MONTH == 730 * 3600


def test_usd_per_million_is_monthly_total_over_millions_of_messages(study: CostStudy) -> None:
    for p in study.projections:
        millions = p.messages_per_second * 730 * 3600 / 1e6
        assert p.report.usd_per_million_messages == pytest.approx(p.report.monthly_usd / millions)


def test_json_figures_agree_with_each_other(study: CostStudy) -> None:
    doc = to_json(study)
    for p in doc["projections"]:
        millions = p["messages_per_second"] * SECONDS_PER_MONTH / 1e6
        assert p["usd_per_million_messages"] == pytest.approx(p["monthly_usd"] / millions, 1e-6)
        assert sum(p["by_service"].values()) == pytest.approx(p["monthly_usd"], abs=0.01)


def test_each_line_is_quantity_times_its_unit_price(model: CostModel) -> None:
    report = model.price(Workload())
    for line in report.lines:
        assert line.unit_price == model.prices[line.price].usd
        assert line.unit == model.prices[line.price].unit
        assert line.usd == pytest.approx(line.quantity * line.unit_price)


def test_total_is_the_sum_of_lines_and_of_services(study: CostStudy) -> None:
    for p in study.projections:
        r = p.report
        assert r.monthly_usd == pytest.approx(math.fsum(x.usd for x in r.lines))
        assert set(r.by_service()) == set(SERVICES)
        assert math.fsum(r.by_service().values()) == pytest.approx(r.monthly_usd)


def test_every_service_a_user_runs_is_priced(model: CostModel) -> None:
    priced = {x.service for x in model.price(Workload()).lines if x.usd > 0}
    # Glue is free up to a million requests a month; past it, it is priced too.
    free_glue = model.size(Workload()).requests["glue"] <= 1e6
    assert priced == set(SERVICES) - ({"glue"} if free_glue else set())
    assert model.price(Workload().scaled(10)).by_service()["glue"] > 0


# -- scaling -----------------------------------------------------------------------------


def test_scale_10x_is_exactly_ten_times_the_baseline(study: CostStudy) -> None:
    base = study.baseline.messages_per_second
    assert [p.scale for p in study.projections] == list(DEFAULT_SCALES)
    for p in study.projections:
        assert p.messages_per_second == p.scale * base


def test_totals_never_fall_as_scale_grows(study: CostStudy) -> None:
    totals = [p.report.monthly_usd for p in study.projections]
    assert totals == sorted(totals)


@pytest.mark.parametrize(
    "workload",
    [
        Workload(),
        Workload(peak_to_average=1.0, kafka_retention_hours=168.0),
        Workload(kafka_local_retention_hours=6.0, tier_to_ia_after_days=None),
    ],
)
def test_cost_is_monotone_over_a_fine_sweep(model: CostModel, workload: Workload) -> None:
    rates = [10 ** (k / 40) for k in range(0, 300)]  # 1 msg/s to ~3e7 msg/s
    totals = [model.price(workload.with_(messages_per_second=r)).monthly_usd for r in rates]
    drops = [(a, b) for a, b in itertools.pairwise(totals) if b < a - 1e-9]
    assert not drops


def test_each_scale_names_a_bottleneck(study: CostStudy) -> None:
    names = [p.report.bottleneck for p in study.projections]
    assert names[0].startswith("none yet")
    for proj, name in zip(study.projections[1:], names[1:], strict=True):
        worst = max(proj.report.deployment.pressures, key=lambda x: x.ratio)
        assert name.startswith(worst.name)  # the limit furthest past 1.0 comes first
    assert "Iceberg commit rate" in names[2] and "MSK cluster size" in names[3]


# -- prices and regions --------------------------------------------------------------------


def test_every_price_is_dated_and_sourced() -> None:
    books = [price_book(r) for r in REGIONS]
    assert {b.region for b in books} == {"ap-southeast-2", "us-east-1"}
    assert {p.name for p in books[0]} == {p.name for p in books[1]}
    for book in books:
        for p in book:
            assert p.priced_on == PRICED_ON
            assert p.source_url.startswith("https://aws.amazon.com/")
            assert p.source_url.endswith("/pricing/") or "pricing" in p.source_url


def test_unknown_region_and_price_are_clear_errors() -> None:
    with pytest.raises(CostModelError, match="unknown region 'eu-west-9'"):
        price_book("eu-west-9")
    with pytest.raises(CostModelError, match="no price 'nope'"):
        price_book()["nope"]
    with pytest.raises(CostModelError):
        price_book().with_price("s3.put", -1.0)


def test_changing_region_changes_exactly_the_lines_whose_price_differs() -> None:
    syd = CostModel(price_book("ap-southeast-2"), default_inputs()).price(Workload())
    use = CostModel(price_book("us-east-1"), default_inputs()).price(Workload())
    assert [(x.item, x.quantity) for x in syd.lines] == [(x.item, x.quantity) for x in use.lines]
    changed = 0
    for a, b in zip(syd.lines, use.lines, strict=True):
        price_moved = (
            price_book("ap-southeast-2")[a.price].usd != price_book("us-east-1")[a.price].usd
        )
        assert (a.usd != b.usd) == (price_moved and a.quantity > 0)
        changed += a.usd != b.usd
    assert 0 < changed < len(syd.lines)  # Athena and inter-AZ transfer cost the same


@pytest.mark.parametrize("name", ["s3.put", "msk.storage", "ec2.c6i.large", "athena.scanned"])
def test_changing_one_price_changes_only_its_lines(name: str) -> None:
    inputs = default_inputs()
    before = CostModel(price_book(), inputs).price(Workload())
    book = price_book().with_price(name, price_book()[name].usd * 2)
    after = CostModel(book, inputs).price(Workload())
    for a, b in zip(before.lines, after.lines, strict=True):
        if a.price == name:
            assert b.usd == pytest.approx(2 * a.usd)
        else:
            assert b.usd == a.usd
    assert any(x.price == name for x in before.lines)


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"messages_per_second": -5.0}, "messages_per_second must be > 0"),
        ({"messages_per_second": 0.0}, "messages_per_second must be > 0"),
        ({"messages_per_second": float("nan")}, "finite"),
        ({"bytes_per_message": 0.0}, "bytes_per_message must be > 0"),
        ({"peak_to_average": 0.5}, "peak_to_average must be >= 1"),
        ({"kafka_retention_hours": -1.0}, "kafka_retention_hours"),
        ({"tier_to_ia_after_days": 7.0}, "tier_to_ia_after_days must be >= 30"),
        ({"tier_to_glacier_ir_after_days": 10.0}, "must come after"),
        ({"kafka_local_retention_hours": 100.0}, "exceeds kafka_retention_hours"),
        ({"api_queries_per_day": -1.0}, "api_queries_per_day"),
    ],
)
def test_bad_workloads_are_rejected_clearly(changes: dict[str, float], message: str) -> None:
    with pytest.raises(CostModelError, match=message):
        Workload(**changes)


def test_bad_scale_and_policy_are_rejected() -> None:
    with pytest.raises(CostModelError, match="scale must be > 0"):
        Workload().scaled(-10)
    with pytest.raises(CostModelError, match="target_cpu_utilization"):
        SizingPolicy(target_cpu_utilization=1.5)
    with pytest.raises(CostModelError, match="status"):
        Input(value=1.0, unit="x", status="guessed", source="?")  # type: ignore[arg-type]


# -- measured inputs -----------------------------------------------------------------------


def test_default_inputs_are_tagged_and_deterministic() -> None:
    inputs = default_inputs()
    assert inputs == default_inputs()
    for name, value in inputs.items():
        assert value.status in ("measured", "assumed"), name
        assert value.source
    # Sizing runs on the per-worker rate `k2 bench ingest --workers` measured, dated.
    per_worker = inputs.ingest_messages_per_core
    assert per_worker.status == "measured"
    assert "k2 bench ingest --workers" in per_worker.source
    assert re.search(r"\d{4}-\d{2}-\d{2}", per_worker.source)
    assert "per worker" in per_worker.unit
    assert inputs.compression_ratio == pytest.approx(
        inputs.wire_bytes_per_message.value / inputs.parquet_bytes_per_message.value
    )


def test_wire_size_comes_from_the_codec_or_is_assumed(monkeypatch: pytest.MonkeyPatch) -> None:
    from k2lib.wire.codec import RECORD_SIZE

    measured = wire_bytes_per_message()
    assert (measured.value, measured.status) == (RECORD_SIZE, "measured")
    real_import = builtins.__import__

    def no_codec(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "k2lib.wire.codec":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_codec)
    fallback = wire_bytes_per_message()
    assert (fallback.value, fallback.status) == (96.0, "assumed")


@pytest.mark.parametrize("as_list", [True, False])
def test_bench_results_become_measured_throughput_per_worker(tmp_path: Path, as_list: bool) -> None:
    entry = {"name": "ingest", "value": 180_000, "unit": "msg/s", "baseline": 1, "ratio": 1}
    path = tmp_path / "results.json"
    path.write_text(json.dumps([{"name": "dedup", "value": 5}, entry] if as_list else entry))
    inputs = from_bench(path)
    # One process is one worker on one core: its rate is not divided by the machine's cores.
    assert inputs.ingest_messages_per_core.value == 180_000
    assert inputs.ingest_messages_per_core.status == "measured"
    assert str(path) in inputs.ingest_messages_per_core.source


def test_bench_prefers_full_stages_and_the_workers_bench(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    single = {"name": "ingest", "value": 180_000, "unit": "msg/s", "catch_up_msg_s": 150_000}
    path.write_text(json.dumps([single]))
    assert from_bench(path).ingest_messages_per_core.value == 150_000
    workers = {
        "name": "ingest_workers",
        "value": 1.5,
        "unit": "x (2 workers / 1)",
        "workers": 2,
        "per_worker_msg_s": 120_000,
        "measured_at": "2026-12-02 03:00 UTC",
        "load_average_before": [3.5, 3.0, 2.0],
    }
    path.write_text(json.dumps({"results": [single, workers]}))
    got = from_bench(path).ingest_messages_per_core
    assert got.value == 120_000
    assert "--workers 2" in got.source and "2026-12-02" in got.source and "3.5" in got.source


def test_missing_bench_results_keep_the_assumption(tmp_path: Path) -> None:
    inputs = from_bench(tmp_path / "absent.json")
    assert inputs.ingest_messages_per_core == default_inputs().ingest_messages_per_core
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CostModelError, match="cannot read bench results"):
        from_bench(tmp_path / "bad.json")


def test_table_measures_parquet_bytes_and_files_per_commit(tmp_path: Path) -> None:
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}")
    catalog.create_namespace("m")
    rows = pa.table({"seq": pa.array(range(1000), pa.int64()), "px": pa.array([1.5] * 1000)})
    table = catalog.create_table("m.trades", schema=rows.schema)
    table.append(rows)
    table.append(rows)
    with pytest.raises(CostModelError, match="no data files"):
        from_table(catalog.create_table("m.empty", schema=rows.schema))

    inputs = from_table(table)
    files = table.inspect.files()
    expected = sum(files.column("file_size_in_bytes").to_pylist()) / 2000
    assert inputs.parquet_bytes_per_message.value == pytest.approx(expected)
    assert inputs.parquet_bytes_per_message.status == "measured"
    assert inputs.files_per_commit.value == 1.0
    assert inputs.files_per_commit.status == "measured"


def test_measured_inputs_change_the_sizing() -> None:
    slow = default_inputs().with_(
        ingest_messages_per_core=Input(value=5_000, unit="msg/s", status="measured", source="t")
    )
    fast = CostModel(price_book(), default_inputs()).size(Workload())
    assert CostModel(price_book(), slow).size(Workload()).consumer_processes > (
        fast.consumer_processes
    )


# -- triggers -------------------------------------------------------------------------------


def test_triggers_cover_the_required_changes(study: CostStudy) -> None:
    names = {t.name for t in study.triggers}
    assert {
        "msk_tiered_storage",
        "s3_lifecycle_tiering",
        "reserved_and_spot_capacity",
        "compaction_cadence",
        "redis_cluster_mode",
        "add_ingest_workers",
        "more_partitions",
        "iceberg_single_committer",
    } <= names
    for t in study.triggers:
        assert t.threshold > 0 and t.action


def test_limit_triggers_sit_where_the_pressure_reaches_one(
    model: CostModel, study: CostStudy
) -> None:
    names = {
        "more_partitions": "Kafka partitions",
        "redis_cluster_mode": "Redis single shard",
        "iceberg_single_committer": "Iceberg commit rate",
        "msk_cluster_limit": "MSK cluster size",
    }
    for t in study.triggers:
        if t.name in names:
            at = model.size(study.baseline.with_(messages_per_second=t.threshold))
            ratio = next(p.ratio for p in at.pressures if p.name == names[t.name])
            assert ratio == pytest.approx(1.0)


def test_add_workers_fires_where_one_worker_is_full(model: CostModel, study: CostStudy) -> None:
    t = next(t for t in study.triggers if t.name == "add_ingest_workers")
    at = model.size(study.baseline.with_(messages_per_second=t.threshold))
    demand = next(p.demand for p in at.pressures if p.name == "Kafka partitions")
    assert demand == pytest.approx(1.0)  # one worker's worth of cores at the peak
    assert at.consumer_processes == 1
    above = model.size(study.baseline.with_(messages_per_second=t.threshold * 1.01))
    assert above.consumer_processes == 2


def test_triggers_name_the_mechanism_k2_has_or_say_it_lacks_one(study: CostStudy) -> None:
    action = {t.name: t.action for t in study.triggers}
    assert "consumer group" in action["add_ingest_workers"]
    assert "k2 ingest" in action["add_ingest_workers"]
    assert "k2 up --cluster" in action["redis_cluster_mode"]
    assert "hash-tagged" in action["redis_cluster_mode"]
    assert "k2 compact" in action["compaction_cadence"]
    for lacking in ("iceberg_single_committer", "more_partitions", "redis_cluster_mode"):
        assert "Not built" in action[lacking], lacking
    assert "single committer" in action["iceberg_single_committer"]
    assert "Not built" not in action["add_ingest_workers"]


def test_compaction_follows_the_maintenance_cadence_of_every_worker(model: CostModel) -> None:
    p = model.policy
    for scale in (1.0, 10.0, 100.0):
        d = model.size(Workload().scaled(scale))
        expected = p.compact_every_commits * p.commit_interval_s / d.consumer_processes
        assert d.compaction_interval_s == pytest.approx(min(expected, 86_400.0))


def test_compaction_trigger_is_where_puts_reach_their_share_of_storage(study: CostStudy) -> None:
    t = next(t for t in study.triggers if t.name == "compaction_cadence")
    policy = replace(study.model.policy, commit_interval_s=t.threshold)
    report = CostModel(study.model.prices, study.model.inputs, policy=policy).price(study.baseline)
    puts = sum(x.usd for x in report.lines if x.item == "PUT: ingest commits")
    storage = sum(x.usd for x in report.lines if x.service == "s3" and x.unit == "GB-month")
    assert puts == pytest.approx(policy.request_share_of_storage * storage)


# -- outputs: JSON, frame, doc, CLI ---------------------------------------------------------


def test_json_has_the_agreed_shape(study: CostStudy) -> None:
    doc = to_json(study)
    assert set(doc) == {"region", "priced_on", "baseline", "projections", "triggers"}
    assert doc["region"] == "ap-southeast-2" and doc["priced_on"] == "2026-11-25"
    assert doc["baseline"]["messages_per_second"] == 10_000
    for p in doc["projections"]:
        assert set(p) == {
            "scale",
            "messages_per_second",
            "monthly_usd",
            "usd_per_million_messages",
            "by_service",
            "bottleneck",
        }
    assert all(set(t) == {"name", "threshold", "action"} for t in doc["triggers"])
    json.dumps(doc, allow_nan=False)


def test_projection_frame_is_long_and_stacks_to_the_totals(study: CostStudy) -> None:
    for source in (study, study.projections, to_json(study)):
        frame = cost_projection_frame(source)
        assert list(frame.columns) == ["scale", "service", "usd"]
        assert len(frame) == len(DEFAULT_SCALES) * len(SERVICES)
        sums = frame.groupby("scale")["usd"].sum()
        for p in study.projections:
            assert sums[p.scale] == pytest.approx(p.report.monthly_usd, abs=0.01)
    single = cost_projection_frame(study.projections[0].report)
    assert set(single["scale"]) == {1.0}


def test_committed_doc_matches_the_model(study: CostStudy) -> None:
    assert DOC.read_text() == render_markdown(study), (
        "docs/operations/cost-model.md is stale: run "
        "`k2 cost --write-doc docs/operations/cost-model.md`"
    )


def test_doc_shows_every_price_input_and_trigger(study: CostStudy) -> None:
    text = render_markdown(study)
    for p in study.model.prices:
        assert f"| {p.name} |" in text
    for name, _ in study.model.inputs.items():
        assert f"| {name} |" in text
    for t in study.triggers:
        assert f"| {t.name} |" in text


def test_cli_json_and_table(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(command, ["--format", "json", "--scale", "100"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [p["scale"] for p in data["projections"]] == [100.0]
    table = runner.invoke(command, ["--region", "us-east-1"])
    assert table.exit_code == 0 and "us-east-1" in table.output and "1000x" in table.output
    doc = tmp_path / "cost.md"
    wrote = runner.invoke(command, ["--write-doc", str(doc)])
    assert wrote.exit_code == 0 and doc.read_text() == DOC.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--messages-per-second", "-5"], "messages_per_second must be > 0"),
        (["--scale", "0"], "must be > 0"),
        (["--region", "mars-1"], "unknown region"),
        (["--format", "xml"], "xml"),
    ],
)
def test_cli_bad_input_is_a_clear_error(args: list[str], message: str) -> None:
    out = CliRunner().invoke(command, args)
    assert out.exit_code != 0
    assert message in out.output
    assert "Traceback" not in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)


def test_measured_inputs_differ_from_defaults_only_where_measured(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"name": "ingest", "value": 100_000, "unit": "msg/s"}))
    measured: MeasuredInputs = from_bench(path)
    changed = [
        n
        for (n, a), (_, b) in zip(measured.items(), default_inputs().items(), strict=True)
        if a != b
    ]
    assert changed == ["ingest_messages_per_core"]
