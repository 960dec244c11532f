"""`k2 cost`: what K2 costs on AWS at 1x to 1000x of a baseline, and what breaks first."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from k2lib.cli.options import defaulted, table_or_json
from k2lib.cost import (
    DEFAULT_SCALES,
    REFERENCE_REGION,
    CostModel,
    MeasuredInputs,
    Workload,
    build_study,
    default_inputs,
    measured_inputs,
    price_book,
    render_markdown,
    render_table,
    to_json,
)
from k2lib.cost.measure import DEFAULT_BENCH_PATH
from k2lib.errors import CostModelError

__all__ = ["command"]


def _measure(bench: Path) -> MeasuredInputs:
    """This machine's bench results and live table; the table is optional (stack may be down)."""
    table = None
    try:
        from k2lib.config import K2Settings
        from k2lib.connect import load_k2_catalog

        settings = K2Settings.from_env()
        local_db = settings.warehouse / "catalog.db"
        if not settings.catalog_external and not local_db.exists():
            # Loading the local catalog would create an empty one; there is nothing to measure.
            raise FileNotFoundError(f"no local catalog at {local_db} (run `k2 up`, `k2 ingest`)")
        table = load_k2_catalog(settings).load_table(settings.table)
    except Exception as exc:  # any catalog failure: say so and keep the assumption
        click.echo(f"note: table not measured ({type(exc).__name__}: {exc})", err=True)
    try:
        return measured_inputs(table, bench)
    except CostModelError as exc:
        if table is None:
            raise
        click.echo(f"note: table not measured ({exc})", err=True)
        return measured_inputs(None, bench)


@click.command(name="cost")
@click.option(
    "--scale",
    "scales",
    type=float,
    multiple=True,
    help="Multiple of the baseline rate; repeat for several. Default: 1, 10, 100 and 1000.",
)
@defaulted(
    "--messages-per-second",
    type=float,
    default=Workload().messages_per_second,
    help="Baseline average rate (msg/s) that the scales multiply.",
)
@defaulted("--region", default=REFERENCE_REGION, help="AWS price region.")
@table_or_json("Human table, or JSON {region, priced_on, baseline, projections, triggers}.")
@click.option(
    "--write-doc",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Regenerate the markdown cost doc at PATH (docs/operations/cost-model.md).",
)
@click.option(
    "--measured",
    is_flag=True,
    help="Use this machine's bench/results.json and live table instead of the stated "
    "assumptions (the committed doc is always generated without it).",
)
@defaulted(
    "--bench",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_BENCH_PATH,
    help="`k2 bench` results read by --measured.",
)
def command(
    scales: tuple[float, ...],
    messages_per_second: float,
    region: str,
    fmt: str,
    write_doc: Path | None,
    measured: bool,
    bench: Path,
) -> None:
    """Price K2 on AWS at multiples of a baseline, with bottlenecks and triggers.

    Every line is quantity x a dated list price from the AWS pricing page it names
    (ap-southeast-2 by default). Sizing uses K2's measured numbers where they exist.

    \b
    Examples:
      k2 cost
      k2 cost --scale 100 --format json
      k2 cost --messages-per-second 50000 --region us-east-1
      k2 cost --write-doc docs/operations/cost-model.md
    """
    for scale in scales:
        if not scale > 0:
            raise click.BadParameter(f"must be > 0, got {scale:g}", param_hint="--scale")
    try:
        baseline = Workload(messages_per_second=messages_per_second)
    except CostModelError as exc:
        raise click.BadParameter(str(exc), param_hint="--messages-per-second") from None
    try:
        prices = price_book(region)
    except CostModelError as exc:
        raise click.BadParameter(str(exc), param_hint="--region") from None
    try:
        inputs = _measure(bench) if measured else default_inputs()
        model = CostModel(prices, inputs)
        study = build_study(model, baseline, scales or DEFAULT_SCALES)
    except CostModelError as exc:
        raise click.ClickException(str(exc)) from None
    if write_doc is not None:
        write_doc.parent.mkdir(parents=True, exist_ok=True)
        write_doc.write_text(render_markdown(study))
        click.echo(f"wrote {write_doc}", err=True)
        return
    if fmt == "json":
        click.echo(json.dumps(to_json(study), indent=2, allow_nan=False))
    else:
        sys.stdout.write(render_table(study))
