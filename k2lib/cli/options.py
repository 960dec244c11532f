"""Options several commands share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["defaulted", "table_or_json"]

F = TypeVar("F", bound=Callable[..., Any])


def table_or_json(help: str) -> Callable[[F], F]:
    """`--format table|json` (default table), passed to the command as `fmt`."""
    return defaulted(
        "--format", "fmt", type=click.Choice(["table", "json"]), default="table", help=help
    )


def defaulted(*decls: str, default: Any, **attrs: Any) -> Callable[[F], F]:
    """`click.option` whose default `--help` shows."""
    return click.option(*decls, default=default, show_default=True, **attrs)
