"""Options several commands share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["table_or_json"]

F = TypeVar("F", bound=Callable[..., Any])


def table_or_json(help: str) -> Callable[[F], F]:
    """`--format table|json` (default table), passed to the command as `fmt`."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help=help,
    )
