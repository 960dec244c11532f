"""`k2 gaps`."""

from __future__ import annotations

import json

import click

from k2lib.cli.options import table_or_json
from k2lib.config import K2Settings

__all__ = ["command"]


@click.command("gaps")
@table_or_json("json prints [{exchange, symbol, first, last}, ...].")
def command(fmt: str) -> None:
    """List the open sequence gaps per venue and symbol, as the tracker keeps them in Redis.

    The gaps are those of the feed on K2_TOPIC (default market.trades).
    """
    import redis

    from k2lib.connect import redis_client
    from k2lib.errors import ServiceError
    from k2lib.ingestion.sequence.gaps import list_gaps

    settings = K2Settings.from_env()
    try:
        gaps = list_gaps(redis_client(settings), settings.sequence_prefix)
    except redis.RedisError as exc:
        raise ServiceError(
            f"Redis at {settings.redacted()['redis_url']} is unreachable: "
            f"{exc}; is the stack up (k2 up)?"
        ) from exc
    if fmt == "json":
        click.echo(json.dumps(gaps))
        return
    if not gaps:
        click.echo("no open gaps")
        return
    click.echo(f"{'exchange':14s} {'symbol':10s} {'first':>14s} {'last':>14s} {'missing':>8s}")
    for g in gaps:
        click.echo(
            f"{g['exchange']:14s} {g['symbol']:10s} {g['first']:>14d} {g['last']:>14d} "
            f"{g['last'] - g['first'] + 1:>8d}"
        )
    click.echo(f"{len(gaps)} gaps, {sum(g['last'] - g['first'] + 1 for g in gaps)} missing")
