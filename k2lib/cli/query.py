"""`k2 query`."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any, NoReturn

import click

from k2lib.cli.options import defaulted
from k2lib.errors import InconsistentSeamError, K2Error, QueryError
from k2lib.query.spec import MAX_LIMIT, QUERY_SOURCES, check_name
from k2lib.query.timeparse import TIME_FORMS_HELP, parse_time

__all__ = ["command"]

CSV_COLUMNS = (
    "exchange",
    "symbol",
    "seq",
    "exch_ts",
    "recv_ts",
    "price",
    "qty",
    "side",
    "source",
    "kafka_partition",
    "kafka_offset",
)
EXIT_FAILED = 1  # the query could not be answered (a dependency is down)
EXIT_BAD_QUERY = 2  # as click's usage errors: the request itself is wrong
EXIT_SEAM = 3  # the broker is behind the snapshot: the answer would be wrong


class _Time(click.ParamType):
    """Checked here for a clear usage error; parsed again by the engine, with one `now`."""

    name = "T"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            parse_time(str(value))
        except QueryError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


class _Name(click.ParamType):
    name = "NAME"

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_name(self.kind, str(value))
        except QueryError as exc:
            self.fail(str(exc), param, ctx)


@click.command("query", epilog=TIME_FORMS_HELP)
@click.option(
    "--symbol",
    "symbols",
    type=_Name("symbol"),
    multiple=True,
    required=True,
    help="Symbol, e.g. BTCUSDT. Repeat for several.",
)
@click.option(
    "--exchange",
    type=_Name("exchange"),
    help="Venue, e.g. binance. With it, only the Kafka partition holding exchange:symbol is read.",
)
@click.option(
    "--start",
    type=_Time(),
    required=True,
    metavar="T",
    help="Inclusive start, e.g. now-15m or 2024-05-01T12:00:00Z.",
)
@click.option("--end", type=_Time(), required=True, metavar="T", help="Exclusive end, e.g. now.")
@defaulted(
    "--source",
    type=click.Choice(QUERY_SOURCES),
    default="hybrid",
    help="hybrid: Iceberg + Kafka tail at an exact seam; "
    "historical: Iceberg only; realtime: Kafka only.",
)
@defaulted(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default="json",
    help="json: one {rows, provenance} object; csv: rows with "
    "a header (provenance goes to stderr).",
)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), help="Keep the newest N rows.")
@click.option(
    "--allow-partial",
    is_flag=True,
    help="If one side fails or the broker lost "
    "data, answer anyway with provenance.partial=true instead of failing.",
)
def command(
    symbols: tuple[str, ...],
    exchange: str | None,
    start: str,
    end: str,
    source: str,
    fmt: str,
    limit: int | None,
    allow_partial: bool,
) -> None:
    """Trades of SYMBOL with start <= exch_ts < end, oldest first, each exactly once.

    The hybrid source reads the Iceberg table at its current snapshot and the Kafka
    topic from the offsets that snapshot recorded up to the high watermark, so rows
    not yet ingested are included and none is counted twice. Provenance says where
    each part came from.
    """
    from k2lib.config import K2Settings
    from k2lib.query import HybridQueryEngine

    try:
        with HybridQueryEngine(K2Settings.from_env()) as engine:
            result = engine.query(
                list(symbols),
                start,
                end,
                exchange=exchange,
                source=source,
                limit=limit,
                allow_partial=allow_partial,
            )
    except InconsistentSeamError as exc:
        _fail(f"inconsistent seam: {exc}", EXIT_SEAM)
    except QueryError as exc:
        _fail(str(exc), EXIT_BAD_QUERY)
    except K2Error as exc:
        _fail(str(exc), EXIT_FAILED)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), separators=(",", ":")))
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.records())
    click.echo(json.dumps({"provenance": result.provenance.as_dict()}), err=True)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)
