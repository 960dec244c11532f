"""`k2`: the command line. Each command lives in its own module; this file only gathers them."""

from __future__ import annotations

import importlib
import sys

import click

from k2lib import __version__
from k2lib.errors import K2Error

__all__ = ["cli", "main"]

# command name -> module under k2lib.cli exposing a click command called `command`
COMMANDS: dict[str, str] = {
    "up": "stack_cmds",
    "status": "stack_cmds",
    "down": "stack_cmds",
    "replay": "replay",
    "ingest": "ingest",
    "query": "query",
    "gaps": "gaps",
    "compact": "compact",
    "chaos": "chaos",
    "bench": "bench",
    "api": "api",
    "cost": "cost",
    "demo": "demo",
}


class _LazyGroup(click.Group):
    """Imports a command's module only when that command runs, so `k2 --help` is instant."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._load(name) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        module_name = COMMANDS.get(name)
        if module_name is None:
            return None
        try:
            module = importlib.import_module(f"k2lib.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"k2lib.cli.{module_name}":
                return None
            raise
        found = getattr(module, name.replace("-", "_") + "_command", None) or getattr(
            module, "command", None
        )
        return found if isinstance(found, click.Command) else None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="k2")
def cli() -> None:
    """K2: replay market data into Kafka, ingest it into Iceberg, query both.

    State lives under K2_HOME (default ./.k2). Point at external services with
    K2_KAFKA_BOOTSTRAP, K2_REDIS_URL and a pyiceberg catalog named K2_CATALOG_NAME.
    """


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except K2Error as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
