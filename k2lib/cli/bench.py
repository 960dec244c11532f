"""`k2 bench NAME`."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import click

from k2lib.cli.options import defaulted
from k2lib.config import K2Settings
from k2lib.connect import redis_client

__all__ = ["command"]

NAMES = ("ingest", "sequence", "dedup", "query", "notebooks", "all")
RESULTS = Path("bench/results.json")


def run_one(
    name: str,
    settings: K2Settings,
    *,
    messages: int | None = None,
    compaction: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    if name == "ingest" and workers is not None:
        from k2lib.bench import ingest
        from k2lib.bench import workers as group

        return group.run(settings, workers=workers, records=messages or ingest.DEFAULT_RECORDS)
    if name == "ingest":
        from k2lib.bench import ingest

        return ingest.run(settings, records=messages or ingest.DEFAULT_RECORDS)
    if name == "sequence":
        from k2lib.bench import sequence

        return sequence.run(redis_client(settings))
    if name == "dedup":
        from k2lib.bench import dedup

        return dedup.run(redis_client(settings))
    if name == "query":
        from k2lib.bench import query

        return query.run(settings, compaction=compaction)
    if name == "notebooks":
        from k2lib.bench import notebooks

        return notebooks.run()
    raise click.BadParameter(f"unknown benchmark {name!r}")


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


@click.command("bench")
@click.argument("name", type=click.Choice(NAMES))
@defaulted("--format", "fmt", type=click.Choice(["json", "table"]), default="json")
@click.option(
    "--messages",
    type=click.IntRange(min=1_000),
    default=None,
    help="Backlog size for `ingest` (default 1,000,000 trades).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=2),
    default=None,
    help="For `ingest`: run 1 and N `k2 ingest` processes in one consumer group on the "
    "same backlog, against 1 and N raw group consumers, instead of the single-process bench.",
)
@click.option(
    "--write",
    is_flag=True,
    help="Also write bench/results.json and regenerate docs/performance.md.",
)
@click.option(
    "--compaction",
    is_flag=True,
    help="query: also time a table of 2,000 micro-batch commits before and after compaction.",
)
def command(
    name: str, fmt: str, messages: int | None, workers: int | None, write: bool, compaction: bool
) -> None:
    """Measure K2 against the raw client or library doing the same work, in one run.

    Prints one JSON object per benchmark:
    {"name", "value", "unit", "baseline", "baseline_label", "ratio", ...details}.
    `notebooks` runs the demo notebooks headless and compares their runtime with the
    demo's budget (no raw client does that work). `ingest` also reports the full-stages
    catch-up of the backlog with degradation on against off (`catch_up_ratio`).
    `ingest --workers N` instead reports K2's 1 -> N worker scaling against the raw
    client's own (`ingest_workers`), each worker a separate process.
    """
    if messages is not None and name not in ("ingest", "all"):
        raise click.BadParameter("--messages applies to the ingest benchmark only")
    if compaction and name not in ("query", "all"):
        raise click.BadParameter("--compaction applies to the query benchmark only")
    if workers is not None and name != "ingest":
        raise click.BadParameter("--workers applies to the ingest benchmark only")
    if workers is not None and write:
        raise click.BadParameter(
            "--write regenerates the whole report; record `--workers` results by hand"
        )
    from k2lib.stack import LocalStack

    settings = K2Settings.from_env()
    LocalStack(settings).up()
    names = [n for n in NAMES if n != "all"] if name == "all" else [name]
    results = []
    for n in names:
        click.echo(f"bench {n} ...", err=True)
        result = run_one(n, settings, messages=messages, compaction=compaction, workers=workers)
        results.append(result)
        if fmt == "json":
            click.echo(json.dumps(result))
        else:
            click.echo(
                f"{n:10s} {result['value']:>14,.1f} {result['unit']:8s} "
                f"baseline {result['baseline']:>14,.1f}  ratio {result['ratio']}"
            )
    if write:
        from k2lib.bench.report import write_report

        write_report(results, machine(), RESULTS)
