"""`k2 demo`."""

from __future__ import annotations

from pathlib import Path

import click

from k2lib.cli.options import defaulted

__all__ = ["command"]


@click.command("demo")
@defaulted(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports/demo"),
    help="Where the executed notebooks and the HTML report go.",
)
@click.option(
    "--notebooks",
    "names",
    multiple=True,
    metavar="NAME",
    help="Run only these notebooks (repeatable), e.g. --notebooks 01_ingestion.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The notebooks folder (default: notebooks/ of this checkout).",
)
@click.option(
    "--write-back",
    is_flag=True,
    help="Also save each successfully executed notebook over its source "
    "(to refresh the committed outputs).",
)
def command(out: Path, names: tuple[str, ...], directory: Path | None, write_back: bool) -> None:
    """Run the ten-minute story headless against the live stack and write an HTML report.

    Starts the local stack if needed (like `k2 up`), executes the notebooks in order
    (positioning, ingestion, storage, monitoring and degradation, hybrid query, cost) each
    in a fresh kernel, and writes OUT/index.html linking one HTML page per notebook.
    Prints the report path and the total runtime; exits 1 if any notebook failed.
    """
    from k2lib.config import K2Settings
    from k2lib.demo import default_notebooks, run_demo
    from k2lib.stack import LocalStack

    click.echo("starting the local stack...", err=True)
    LocalStack(K2Settings.from_env()).up()
    report = run_demo(
        directory or default_notebooks(),
        out,
        names=names or None,
        write_back=write_back,
        progress=lambda line: click.echo(line, err=True),
    )
    for line in report.lines():
        click.echo(line, err=True)
    click.echo(f"report: {report.index.resolve()}")
    click.echo(f"total runtime: {report.seconds:.1f}s")
    if not report.ok:
        raise SystemExit(1)
