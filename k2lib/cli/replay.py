"""`k2 replay SOURCE`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from k2lib.cli.options import defaulted
from k2lib.config import K2Settings
from k2lib.feeds import FaultSpec, open_source
from k2lib.feeds.publisher import replay
from k2lib.stack import LocalStack

__all__ = ["command"]


@click.command("replay")
@click.argument("source")
@click.option("--limit", type=click.IntRange(min=1), help="Publish at most N records.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Messages per second (default: as fast as the broker takes them).",
)
@click.option(
    "--faults",
    metavar="SPEC",
    help=(
        "Inject faults, e.g. dup=0.01,gap=0.001,reorder=0.01,poison=0.001,reset=0.0001 "
        "(reset: the symbol restarts at seq 1, a new session)"
    ),
)
@defaulted(
    "--seed",
    type=int,
    default=0,
    help="Seed for fault injection and the synthetic feed.",
)
@click.option(
    "--truth",
    "truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the ground truth of injected faults to this JSON file.",
)
@click.option("--exchange", help="Venue for captures (default: from the file name).")
@click.option("--symbols", type=click.IntRange(min=1), help="Synthetic feed: number of symbols.")
def command(
    source: str,
    limit: int | None,
    rate: float | None,
    faults: str | None,
    seed: int,
    truth: Path | None,
    exchange: str | None,
    symbols: int | None,
) -> None:
    """Publish trades from SOURCE into Kafka (topic market.trades).

    SOURCE is `synthetic`, a Binance capture (.gz) or a folder of them, or a
    .csv/.parquet file with columns exchange,symbol,seq,ts,price,qty[,side].
    Prints one JSON summary as the last line of stdout.
    """
    spec = FaultSpec.parse(faults)
    settings = K2Settings.from_env()
    if not settings.kafka_external:
        LocalStack(settings).ensure_topics()
    feed = open_source(source, limit=limit, exchange=exchange, seed=seed, symbols=symbols)
    from k2lib.cli.progress import bar

    with bar(f"replay {feed.name}", total=limit) as pbar:
        summary = replay(
            feed,
            settings,
            rate=rate,
            faults=spec,
            seed=seed,
            truth_path=truth,
            progress=pbar.update,
        )
    click.echo(json.dumps(summary))
