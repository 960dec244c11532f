"""`k2 up`, `k2 status`, `k2 down`."""

from __future__ import annotations

import json
import os

import click

from k2lib.cli.options import table_or_json
from k2lib.config import K2Settings
from k2lib.errors import ConfigError
from k2lib.stack import LocalStack, ServiceStatus

__all__ = ["down_command", "status_command", "up_command"]


@click.command("up")
@click.option(
    "--cluster/--single",
    "cluster",
    default=None,
    help="Profile: a 3-node Redis Cluster and a PostgreSQL catalog (--cluster), or one "
    "Redis and the SQLite catalog (--single). Recorded under K2_HOME; default: the recorded "
    "profile (K2_PROFILE overrides), else single.",
)
@click.option(
    "--monitoring",
    is_flag=True,
    help="Also start Prometheus (Debian's package `prometheus`) on 127.0.0.1:"
    "$K2_PROMETHEUS_PORT (default 19090) with K2's alert rules, scraping ingest and the API.",
)
def up_command(cluster: bool | None, monitoring: bool) -> None:
    """Start the local stack on 127.0.0.1: Tansu broker, Redis, Iceberg catalog.

    Idempotent: services already running are left alone. A port taken by another
    process is an error naming the port. Services pointed elsewhere with
    K2_KAFKA_BOOTSTRAP / K2_REDIS_URL / K2_REDIS_CLUSTER_NODES are not started.
    `k2 down` stops Prometheus too.
    """
    settings = K2Settings.from_env()
    if cluster is not None:
        wanted = "cluster" if cluster else "single"
        pinned = os.environ.get("K2_PROFILE")
        if pinned and pinned != wanted:
            raise ConfigError(f"K2_PROFILE={pinned} contradicts `k2 up --{wanted}`")
        settings = K2Settings.from_env({**os.environ, "K2_PROFILE": wanted})
    stack = LocalStack(settings)
    click.echo("starting the local stack...", err=True)
    for name, what in stack.up(monitoring=monitoring).items():
        click.echo(f"{name:8s} {what}")
    _print_status(stack, "table")


@click.command("status")
@table_or_json("Output format.")
def status_command(fmt: str) -> None:
    """Health and endpoint of each service, and the table's row count.

    Exits 1 when a service is unhealthy.
    """
    stack = LocalStack(K2Settings.from_env())
    healthy = _print_status(stack, fmt)
    if not healthy:
        raise SystemExit(1)


@click.command("down")
def down_command() -> None:
    """Stop the services that `k2 up` started (either profile), and nothing else.

    State on disk, and the recorded profile, are kept.
    """
    for name, what in LocalStack(K2Settings.from_env()).down().items():
        click.echo(f"{name:8s} {what}")


def _print_status(stack: LocalStack, fmt: str) -> bool:
    status = stack.status()
    rows: dict[str, dict[str, object]] = {
        name: (s.as_dict() if isinstance(s, ServiceStatus) else s) for name, s in status.items()
    }
    if fmt == "json":
        click.echo(json.dumps(rows, sort_keys=True))
    else:
        for name, row in rows.items():
            mark = "ok  " if row["healthy"] else "DOWN"
            pid = f" pid={row['pid']}" if row.get("pid") else ""
            detail = f"  {row['detail']}" if row.get("detail") else ""
            click.echo(f"{mark} {name:8s} {row['endpoint']}{pid}{detail}")
    return all(bool(row["healthy"]) for row in rows.values())
