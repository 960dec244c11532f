"""The local stack: real services on loopback, owned and recorded under `K2_HOME`.

`LocalStack(settings).up()` starts the Tansu broker and Redis (unless pointed elsewhere by
`K2_KAFKA_BOOTSTRAP` / `K2_REDIS_URL`), creates the topics and the Iceberg table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k2lib.config import K2Settings
from k2lib.errors import K2Error
from k2lib.stack.catalog import load_k2_catalog
from k2lib.stack.process import ServiceProcess
from k2lib.stack.prometheus import PrometheusConfig, PrometheusService, prometheus_binary
from k2lib.stack.services import (
    broker_problem,
    broker_process,
    create_topics,
    redis_client,
    redis_problem,
    redis_process,
)
from k2lib.storage.table import ensure_table

__all__ = ["LocalStack", "ServiceStatus", "load_k2_catalog", "redis_client"]

DLQ_PARTITIONS = 1


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    healthy: bool
    endpoint: str
    managed: bool
    pid: int | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "endpoint": self.endpoint,
            "managed": self.managed,
            "pid": self.pid,
            "detail": self.detail,
        }


class LocalStack:
    """up / status / down for the broker, Redis and the catalog."""

    def __init__(self, settings: K2Settings) -> None:
        self.settings = settings

    def _processes(self) -> dict[str, ServiceProcess]:
        procs: dict[str, ServiceProcess] = {}
        if not self.settings.kafka_external:
            procs["broker"] = broker_process(self.settings)
        if not self.settings.redis_external:
            procs["redis"] = redis_process(self.settings)
        return procs

    def prometheus(self) -> PrometheusService:
        return PrometheusService(PrometheusConfig.from_settings(self.settings))

    def up(self, *, monitoring: bool = False) -> dict[str, str]:
        """Start what is not running; create topics and the table; with `monitoring`, also
        Prometheus (k2lib.stack.prometheus). Returns what happened."""
        if monitoring:
            prometheus_binary()  # missing: say so before starting anything
        self.settings.home.mkdir(parents=True, exist_ok=True)
        outcome: dict[str, str] = {}
        for name, proc in self._processes().items():
            _, started = proc.start()
            outcome[name] = "started" if started else "already running"
        self.ensure_topics()
        ensure_table(load_k2_catalog(self.settings), self.settings.table)
        outcome["catalog"] = "ready"
        if monitoring:
            outcome["prometheus"] = self.prometheus().start()
        return outcome

    def ensure_topics(self) -> None:
        s = self.settings
        create_topics(s, {s.topic: s.partitions, s.dlq_topic: DLQ_PARTITIONS})

    def start_service(self, name: str) -> bool:
        """Start one managed service (used by chaos runs). True when it was started now."""
        _, started = self._processes()[name].start()
        if name == "broker":
            self.ensure_topics()
        return started

    def stop_service(self, name: str) -> bool:
        return self._processes()[name].stop()

    def down(self) -> dict[str, str]:
        """Stop what `up` started; external services are never touched."""
        procs = {**self._processes(), "prometheus": self.prometheus().process()}
        return {name: ("stopped" if proc.stop() else "not running") for name, proc in procs.items()}

    def status(self) -> dict[str, ServiceStatus | dict[str, Any]]:
        procs = self._processes()
        s = self.settings
        broker_rec = procs["broker"].running() if "broker" in procs else None
        redis_rec = procs["redis"].running() if "redis" in procs else None
        broker_reason = broker_problem(s, timeout=1.5)
        redis_reason = redis_problem(s)
        result: dict[str, ServiceStatus | dict[str, Any]] = {
            "broker": ServiceStatus(
                "broker",
                not broker_reason,
                s.kafka_bootstrap,
                managed="broker" in procs,
                pid=broker_rec.pid if broker_rec else None,
                detail=broker_reason,
            ),
            "redis": ServiceStatus(
                "redis",
                not redis_reason,
                s.redacted()["redis_url"],
                managed="redis" in procs,
                pid=redis_rec.pid if redis_rec else None,
                detail=redis_reason,
            ),
        }
        result["catalog"] = self._catalog_status()
        prometheus = self.prometheus()
        if prometheus.requested():  # shown once `k2 up --monitoring` started it
            problem = prometheus.problem()
            result["prometheus"] = ServiceStatus(
                "prometheus",
                not problem,
                prometheus.config.url,
                managed=True,
                pid=prometheus.pid(),
                detail=problem,
            )
        return result

    def _catalog_status(self) -> ServiceStatus:
        s = self.settings
        endpoint = s.catalog_properties().get("uri", f"pyiceberg catalog {s.catalog_name!r}")
        try:
            rows = self.table_rows()
            return ServiceStatus(
                "catalog",
                True,
                endpoint,
                managed=not s.catalog_external,
                detail=f"{s.table}: {rows} rows",
            )
        except K2Error:
            raise
        except Exception as exc:
            return ServiceStatus(
                "catalog",
                False,
                endpoint,
                not s.catalog_external,
                None,
                f"{type(exc).__name__}: {exc}",
            )

    def table_rows(self) -> int:
        table = load_k2_catalog(self.settings).load_table(self.settings.table)
        snap = table.current_snapshot()
        total = snap.summary["total-records"] if snap and snap.summary else None
        return int(total) if total is not None else 0
