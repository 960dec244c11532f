"""Assembling a full ingest process: the stages it runs and its /metrics endpoint."""

from __future__ import annotations

from http.server import ThreadingHTTPServer
from threading import Thread

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import MetricsHandler

from k2lib.config import K2Settings
from k2lib.errors import PortInUseError
from k2lib.ingestion.stages import Stages
from k2lib.resilience.manager import DegradationConfig

__all__ = ["build_stages", "serve_metrics"]

METRICS_HOST = "127.0.0.1"


def serve_metrics(
    registry: CollectorRegistry, port: int, host: str = METRICS_HOST
) -> ThreadingHTTPServer:
    """Serve `registry` at http://host:port/metrics on a daemon thread (loopback default)."""
    handler = MetricsHandler.factory(registry)
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise PortInUseError(f"metrics port {port} on {host} is in use ({exc})") from exc
    server.daemon_threads = True
    Thread(target=server.serve_forever, name="k2-metrics", daemon=True).start()
    return server


def build_stages(
    settings: K2Settings, registry: CollectorRegistry, degradation: DegradationConfig | None = None
) -> Stages:
    """The full set of stages: degradation, shedding, sequence tracking and dedup."""
    from k2lib.ingestion.resilient import ResilientStages

    return ResilientStages.from_settings(settings, registry, degradation=degradation)
