"""`k2 ingest`."""

from __future__ import annotations

import json
import logging

import click

from k2lib.cli.options import defaulted
from k2lib.config import K2Settings

__all__ = ["command"]


@click.command("ingest")
@click.option("--max-messages", type=click.IntRange(min=1), help="Stop after N messages.")
@click.option(
    "--until-idle",
    "until_idle",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Stop after SECONDS with no new messages, once everything consumed is "
    "committed (a group member that owns only some partitions counts from ~11 s "
    "after its start, once dead members' partitions have moved).",
)
@defaulted(
    "--commit-rows",
    type=click.IntRange(min=1),
    default=250_000,
    help="Commit to Iceberg once this many records are buffered.",
)
@defaulted(
    "--commit-interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    help="...or once this many seconds have passed.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    help="Serve /metrics on 127.0.0.1:PORT (default K2_METRICS_PORT, 9464; 0 = off).",
)
@click.option(
    "--group",
    metavar="NAME",
    help="Consumer group shared with the other `k2 ingest` of this feed "
    "(default: k2-ingest.<topic>.<table>).",
)
@click.option(
    "--alone",
    is_flag=True,
    help="Read every partition without joining a group (starts ~3 s sooner; "
    "a second process is then fenced, not given partitions).",
)
@click.option(
    "--plain",
    is_flag=True,
    help="Only validate and store: no dedup, sequence tracking or degradation.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log transitions and commits to stderr.")
def command(
    max_messages: int | None,
    until_idle: float | None,
    commit_rows: int,
    commit_interval: float,
    metrics_port: int | None,
    group: str | None,
    alone: bool,
    plain: bool,
    verbose: bool,
) -> None:
    """Consume market.trades into the Iceberg table, exactly once.

    Resumes from the Kafka offsets recorded in the table's latest snapshot. Several
    processes with the same settings share the partitions as one consumer group; a
    commit lands only if the table still records what its writer started from. Poison
    messages go to market.trades.dlq with their reason. Prints one JSON summary as
    the last line of stdout.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    from k2lib.cli.progress import bar
    from k2lib.ingestion.pipeline import IngestConfig, IngestPipeline, default_group
    from k2lib.ingestion.runtime import build_stages, serve_metrics
    from k2lib.monitoring import new_registry

    settings = K2Settings.from_env()
    registry = new_registry()
    port = settings.metrics_port if metrics_port is None else metrics_port
    server = serve_metrics(registry, port) if port else None
    stages = None if plain else build_stages(settings, registry)
    config = IngestConfig(
        commit_rows=commit_rows,
        commit_interval_s=commit_interval,
        group=not alone,
        group_id=group or default_group(settings),
    )
    pipeline = IngestPipeline.from_settings(
        settings, config=config, registry=registry, stages=stages
    )
    with bar("ingest", total=max_messages) as pbar:
        summary = pipeline.run(
            max_messages=max_messages, until_idle_s=until_idle, progress=pbar.update
        )
    if server is not None:
        server.shutdown()
    click.echo(json.dumps(summary))
