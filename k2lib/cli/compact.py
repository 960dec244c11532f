"""`k2 compact`."""

from __future__ import annotations

import datetime as dt
import json

import click

from k2lib.cli.options import defaulted
from k2lib.config import K2Settings

__all__ = ["command"]


@click.command("compact")
@click.option(
    "--day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Compact only this day partition (UTC, YYYY-MM-DD). Default: every day that qualifies.",
)
@defaulted(
    "--min-files",
    type=click.IntRange(min=2),
    default=8,
    help="Rewrite a day only once it holds at least this many small files.",
)
@defaulted(
    "--target-mb",
    type=click.FloatRange(min=1, max=4096),
    default=128.0,
    help="On-disk size of a rewritten file; files under 3/4 of it count as small.",
)
def command(day: dt.datetime | None, min_files: int, target_mb: float) -> None:
    """Rewrite a day partition's small data files into large sorted ones.

    Safe while `k2 ingest` keeps committing: a commit that loses the race is retried on the
    new snapshot, and the compaction snapshot records the same Kafka offsets, so resume and
    the hybrid query stay exact. Progress goes to stderr; the last stdout line is a JSON
    summary (files before/after, rows, bytes, seconds).
    """
    from pyiceberg.exceptions import NoSuchTableError

    from k2lib.connect import load_k2_catalog
    from k2lib.errors import StorageError
    from k2lib.storage.compaction import CompactionConfig, compact

    settings = K2Settings.from_env()
    try:
        table = load_k2_catalog(settings).load_table(settings.table)
    except NoSuchTableError as exc:
        raise StorageError(f"table {settings.table!r} does not exist; nothing to compact") from exc
    config = CompactionConfig(target_bytes=int(target_mb * 2**20), min_files=min_files)
    result = compact(
        table,
        config,
        day=day.date() if day is not None else None,
        progress=lambda message: click.echo(f"compact: {message}", err=True),
    )
    click.echo(json.dumps({"table": settings.table, **result.summary()}))
