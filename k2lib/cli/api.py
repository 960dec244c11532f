"""`k2 api`."""

from __future__ import annotations

import ipaddress

import click

from k2lib.cli.options import defaulted

__all__ = ["command"]


@click.command("api")
@defaulted(
    "--host",
    default="127.0.0.1",
    help="Address to bind. Loopback by default: the API has no authentication.",
)
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default K2_API_PORT, 8042).")
@defaulted(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info"]),
    default="warning",
)
def command(host: str, port: int | None, log_level: str) -> None:
    """Serve the query REST API (FastAPI on uvicorn) until interrupted.

    GET /v1/trades, /v1/trades/recent, /v1/gaps, /v1/health, /v1/degradation and
    /metrics; the OpenAPI schema is at /openapi.json and the docs at /docs.
    """
    import uvicorn

    from k2lib.api import create_app
    from k2lib.config import K2Settings

    settings = K2Settings.from_env()
    if not _loopback(host):
        click.echo(f"warning: binding {host}: the API has no authentication", err=True)
    port = settings.api_port if port is None else port
    click.echo(f"k2 api on http://{host}:{port} (docs at /docs)", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
