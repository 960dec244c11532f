"""`k2 chaos`."""

from __future__ import annotations

import json

import click

from k2lib.cli.options import defaulted
from k2lib.config import K2Settings

__all__ = ["command"]


@click.command("chaos")
@defaulted(
    "--burst",
    "burst",
    type=click.IntRange(min=1000),
    default=250_000,
    help="Records in the full-rate burst.",
)
@defaulted(
    "--outage",
    type=click.FloatRange(min=0),
    default=8.0,
    help="Seconds Redis stays down.",
)
@click.option(
    "--only",
    "only",
    multiple=True,
    type=click.Choice(["burst", "slow_commit", "redis_outage"]),
    help="Run only these scenarios (repeatable). Default: all three.",
)
@defaulted(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=0,
    help="Serve /metrics on 127.0.0.1:PORT during the run.",
)
def command(burst: int, outage: float, only: tuple[str, ...], metrics_port: int) -> None:
    """Apply real load and faults to a live ingest and watch it degrade and recover.

    A full-rate burst, a slowed Iceberg commit, and Redis stopped then started. Runs on
    its own topic and table. Ends with the JSON summary of the ingest, plus
    exactly_once computed by reading the table back.
    """
    from k2lib.demo.chaos import SCENARIOS, ChaosConfig, ChaosRun
    from k2lib.ingestion.runtime import serve_metrics
    from k2lib.monitoring import new_registry
    from k2lib.stack import LocalStack

    settings = K2Settings.from_env()
    LocalStack(settings).up()
    registry = new_registry()
    server = serve_metrics(registry, metrics_port) if metrics_port else None
    config = ChaosConfig(
        burst_records=burst, redis_outage_s=outage, scenarios=tuple(only) or SCENARIOS
    )
    run = ChaosRun(settings, config, registry=registry, log=lambda s: click.echo(s, err=True))
    summary = run.run()
    if server is not None:
        server.shutdown()
    click.echo(json.dumps(summary, default=str))
    if not summary.get("exactly_once"):
        raise SystemExit(1)
