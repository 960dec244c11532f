"""The local stack: real services on loopback, owned and recorded under `K2_HOME`.

`LocalStack(settings).up()` starts the Tansu broker and Redis (unless pointed elsewhere by
`K2_KAFKA_BOOTSTRAP` / `K2_REDIS_URL`), creates the topics and the Iceberg table.
On the cluster profile (`k2 up --cluster`, ADR 012) a Redis Cluster takes the single
Redis's place and the catalog lives in a local PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from k2lib.config import K2Settings, profile_path
from k2lib.connect import (
    broker_problem,
    cluster_health,
    create_topics,
    load_k2_catalog,
    redis_client,
    redis_problem,
)
from k2lib.errors import K2Error
from k2lib.stack.cluster import (
    cluster_node_processes,
    ensure_cluster,
    recorded_cluster_nodes,
    redis_cli_binary,
)
from k2lib.stack.postgres import postgres_problem, postgres_process
from k2lib.stack.process import ServiceProcess, recorded_process
from k2lib.stack.prometheus import PrometheusConfig, PrometheusService, prometheus_binary
from k2lib.stack.services import broker_process, redis_binary, redis_process
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
        """Every field but the name (the key it is listed under)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}


class LocalStack:
    """up / status / down for the broker, Redis and the catalog."""

    def __init__(self, settings: K2Settings) -> None:
        self.settings = settings

    @property
    def on_cluster(self) -> bool:
        return self.settings.profile == "cluster"

    @property
    def local_postgres(self) -> bool:
        """The cluster profile's own PostgreSQL, unless a catalog is configured elsewhere."""
        return self.on_cluster and not self.settings.catalog_external

    def _processes(self) -> dict[str, ServiceProcess]:
        procs: dict[str, ServiceProcess] = {}
        # First: a missing PostgreSQL fails `up` before anything was started.
        postgres = postgres_process(self.settings) if self.local_postgres else None
        if not self.settings.kafka_external:
            procs["broker"] = broker_process(self.settings)
        if self.on_cluster:
            procs.update(cluster_node_processes(self.settings, redis_binary()))
        if postgres is not None:
            procs["postgres"] = postgres
        elif not self.settings.redis_external:
            procs["redis"] = redis_process(self.settings)
        return procs

    def prometheus(self) -> PrometheusService:
        return PrometheusService(PrometheusConfig.from_settings(self.settings))

    def up(self, *, monitoring: bool = False) -> dict[str, str]:
        """Start what is not running; create topics and the table; with `monitoring`, also
        Prometheus (k2lib.stack.prometheus). Returns what happened.

        The profile is recorded under K2_HOME/run, so later commands on this home
        (K2Settings.from_env) use the same Redis and catalog.
        """
        if monitoring:
            prometheus_binary()  # missing: say so before starting anything
        self.settings.home.mkdir(parents=True, exist_ok=True)
        outcome: dict[str, str] = {}
        for name, proc in self._processes().items():
            _, started = proc.start()
            outcome[name] = "started" if started else "already running"
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        profile_path(self.settings.home).write_text(self.settings.profile + "\n")
        if self.on_cluster:
            redis_cli = redis_cli_binary(redis_binary())
            outcome["cluster"] = ensure_cluster(self.settings, redis_cli)
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
        proc = recorded_process(self.settings.state_dir, name)
        return proc.stop() if proc is not None else False

    def _recorded(self) -> dict[str, ServiceProcess | None]:
        """What `down` looks at: this profile's services and whatever either profile recorded
        (a home switched between profiles still stops all of its own processes)."""
        s = self.settings
        names = [] if s.kafka_external else ["broker"]
        if not (s.redis_external and not self.on_cluster):
            names.append("redis")
        found: dict[str, ServiceProcess | None] = {
            name: recorded_process(s.state_dir, name) for name in names
        }
        found.update(recorded_cluster_nodes(s.state_dir))
        postgres = recorded_process(s.state_dir, "postgres")
        if postgres is not None or self.local_postgres:
            found["postgres"] = postgres
        prometheus = recorded_process(s.state_dir, "prometheus")
        if prometheus is not None:
            found["prometheus"] = prometheus
        return found

    def down(self) -> dict[str, str]:
        """Stop what `up` started, on both profiles, and Prometheus; external services are
        never touched. The recorded profile and all data stay: the next `k2 up` brings the
        same stack back.
        """
        return {
            name: ("stopped" if proc is not None and proc.stop() else "not running")
            for name, proc in self._recorded().items()
        }

    def _pid(self, name: str) -> int | None:
        proc = recorded_process(self.settings.state_dir, name)
        rec = proc.running() if proc is not None else None
        return rec.pid if rec else None

    def status(self) -> dict[str, ServiceStatus | dict[str, Any]]:
        s = self.settings
        broker_reason = broker_problem(s, timeout=1.5)
        result: dict[str, ServiceStatus | dict[str, Any]] = {
            "broker": ServiceStatus(
                "broker",
                not broker_reason,
                s.kafka_bootstrap,
                managed=not s.kafka_external,
                pid=self._pid("broker") if not s.kafka_external else None,
                detail=broker_reason,
            ),
        }
        if self.on_cluster:
            result["cluster"] = self._cluster_status()
        else:
            redis_reason = redis_problem(s)
            result["redis"] = ServiceStatus(
                "redis",
                not redis_reason,
                s.redacted()["redis_url"],
                managed=not s.redis_external,
                pid=self._pid("redis") if not s.redis_external else None,
                detail=redis_reason,
            )
        if self.local_postgres:
            result["postgres"] = self._postgres_status()
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

    def _cluster_status(self) -> dict[str, Any]:
        """Like a ServiceStatus, with `pid` the first node's and `pids` every node's."""
        s = self.settings
        health = cluster_health(s)
        nodes = [] if s.redis_external else s.redis_cluster_nodes
        pids = [self._pid(f"redis-cluster-{port}") for _, port in nodes]
        return {
            "healthy": health.ok,
            "endpoint": ",".join(f"{h}:{p}" for h, p in s.redis_cluster_nodes),
            "managed": not s.redis_external,
            "pid": pids[0] if pids else None,
            "pids": pids,
            "masters": health.masters,
            "detail": health.detail,
        }

    def _postgres_status(self) -> ServiceStatus:
        s = self.settings
        reason = postgres_problem(s)
        return ServiceStatus(
            "postgres",
            not reason,
            f"127.0.0.1:{s.postgres_port}",
            managed=True,
            pid=self._pid("postgres"),
            detail=reason,
        )

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
