"""Prometheus as a part of the local stack (`k2 up --monitoring`).

Debian's `/usr/bin/prometheus` (package `prometheus`, installed by scripts/system-deps.sh),
on loopback, with K2's alert rules (deploy/prometheus/alerts.yml) and a config generated
under `K2_HOME/prometheus/` that scrapes ingest (`K2_METRICS_PORT`) and the API
(`K2_API_PORT`). Its record lives beside the broker's and Redis's in `K2_HOME/run`, so
`k2 down` stops it and `k2 status` shows it.

Two folders of that home are read live by the running Prometheus:

* `targets/<job>-<name>.json`: more scrape targets (file service discovery, re-read every
  second). A process on a random metrics port, such as the notebooks' live ingest, adds
  itself there instead of needing the default port.
* `rules/*.yml`: rule files, re-read on `reload()`. `alerts.yml` is the repository's rules,
  copied unchanged at each start.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

import k2lib
from k2lib.config import K2Settings
from k2lib.errors import PortInUseError, ServiceError
from k2lib.stack.process import ServiceProcess

__all__ = [
    "DEFAULT_PROMETHEUS_PORT",
    "PrometheusConfig",
    "PrometheusService",
    "prometheus_binary",
]

DEFAULT_PROMETHEUS_PORT = 19090
PACKAGE_HINT = (
    "install Debian's package `prometheus` (`sudo apt-get install prometheus`, "
    "or scripts/system-deps.sh)"
)
# The degradation cascade moves in seconds; a 15 s default scrape would miss whole levels.
DEFAULT_SCRAPE_INTERVAL_S = 1.0
# A local demo store: a day is plenty and keeps K2_HOME small.
RETENTION = "1d"
JOBS = ("k2-ingest", "k2-api")


def default_rules() -> Path:
    return Path(k2lib.__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise ServiceError(f"prometheus is not installed (no `prometheus` on PATH): {PACKAGE_HINT}")
    return found


@dataclass(frozen=True, kw_only=True)
class PrometheusConfig:
    """Where Prometheus keeps its files, where it listens, what it scrapes."""

    home: Path  # config, rules, targets and the TSDB live under home/prometheus
    state_dir: Path  # the service record and log, beside the other services'
    port: int = DEFAULT_PROMETHEUS_PORT
    ingest_port: int = 0  # 0: no static ingest target (file-discovered ones still apply)
    api_port: int = 0
    scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S
    rules: Path | None = None  # default: the repository's deploy/prometheus/alerts.yml

    @classmethod
    def from_settings(
        cls, settings: K2Settings, env: Mapping[str, str] | None = None
    ) -> PrometheusConfig:
        env = os.environ if env is None else env
        raw = env.get("K2_PROMETHEUS_PORT", str(DEFAULT_PROMETHEUS_PORT))
        try:
            port = int(raw)
        except ValueError:
            raise ServiceError(f"K2_PROMETHEUS_PORT must be a port number, got {raw!r}") from None
        return cls(
            home=settings.home,
            state_dir=settings.state_dir,
            port=port,
            ingest_port=settings.metrics_port,
            api_port=settings.api_port,
        )

    @property
    def root(self) -> Path:
        return self.home / "prometheus"

    @property
    def config_path(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def rules_dir(self) -> Path:
        return self.root / "rules"

    @property
    def targets_dir(self) -> Path:
        return self.root / "targets"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def scrape_config(self) -> dict[str, object]:
        interval = f"{self.scrape_interval_s:g}s"
        jobs = []
        for job, port in zip(JOBS, (self.ingest_port, self.api_port), strict=True):
            component = job.removeprefix("k2-")
            entry: dict[str, object] = {
                "job_name": job,
                "metrics_path": "/metrics",
                "file_sd_configs": [
                    {"files": [str(self.targets_dir / f"{job}-*.json")], "refresh_interval": "1s"}
                ],
            }
            if port:
                entry["static_configs"] = [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"component": component}}
                ]
            jobs.append(entry)
        return {
            "global": {
                "scrape_interval": interval,
                "evaluation_interval": interval,
                "external_labels": {"platform": "k2"},
            },
            "rule_files": [str(self.rules_dir / "*.yml")],
            "scrape_configs": jobs,
        }


class PrometheusService:
    """Start, stop, probe and feed (targets, rules) the stack's Prometheus."""

    def __init__(self, config: PrometheusConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self.http = http or httpx.Client(timeout=3.0)

    def process(self) -> ServiceProcess:
        c = self.config
        argv = [
            shutil.which("prometheus") or "prometheus",  # start() insists it exists
            f"--config.file={c.config_path}",
            f"--storage.tsdb.path={c.data_dir}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address=127.0.0.1:{c.port}",
            "--web.enable-lifecycle",  # POST /-/reload re-reads rules/ (see reload())
        ]
        return ServiceProcess(
            name="prometheus",
            argv=argv,
            host="127.0.0.1",
            port=c.port,
            state_dir=c.state_dir,
            ready=self.ready,
        )

    def write_files(self) -> None:
        c = self.config
        rules = c.rules or default_rules()
        if not rules.is_file():
            raise ServiceError(f"alert rules not found at {rules} (deploy/prometheus/alerts.yml)")
        for folder in (c.rules_dir, c.targets_dir, c.data_dir):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rules, c.rules_dir / "alerts.yml")
        c.config_path.write_text(
            "# Generated by `k2 up --monitoring` at each start; edit deploy/prometheus/ instead.\n"
            + yaml.safe_dump(c.scrape_config(), sort_keys=False)
        )

    def start(self) -> str:
        """Start unless running (a running one re-reads its files). Returns what happened."""
        prometheus_binary()
        proc = self.process()
        self.write_files()
        if proc.running() is not None:
            self.reload()
            return "already running"
        try:
            proc.start()
        except PortInUseError as exc:
            raise PortInUseError(f"{exc} (K2_PROMETHEUS_PORT)") from None
        return "started"

    def stop(self) -> bool:
        return self.process().stop()

    def requested(self) -> bool:
        """True once `k2 up --monitoring` started it, until `k2 down` stops it."""
        return self.process().record() is not None

    def pid(self) -> int | None:
        rec = self.process().running()
        return rec.pid if rec else None

    def ready(self) -> bool:
        try:
            return self.http.get(f"{self.config.url}/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def problem(self) -> str:
        """Why Prometheus is not serving, or "" when it is."""
        if self.process().running() is None:
            return "not running (start it with `k2 up --monitoring`)"
        return "" if self.ready() else f"not ready on {self.config.url}"

    def reload(self) -> None:
        """Make the running Prometheus re-read its config and every rule file."""
        try:
            self.http.post(f"{self.config.url}/-/reload").raise_for_status()
        except httpx.HTTPError as exc:
            raise ServiceError(f"prometheus at {self.config.url} did not reload: {exc}") from exc

    def add_target(self, job: str, name: str, port: int, host: str = "127.0.0.1") -> Path:
        """Scrape host:port as `job` from now on (file discovery: no restart, no reload)."""
        if job not in JOBS:
            raise ServiceError(f"unknown scrape job {job!r}; one of {', '.join(JOBS)}")
        self.config.targets_dir.mkdir(parents=True, exist_ok=True)
        path = self.config.targets_dir / f"{job}-{name}.json"
        entry = [{"targets": [f"{host}:{port}"], "labels": {"component": job.removeprefix("k2-")}}]
        tmp = path.with_suffix(".tmp")  # not *.json: never read half-written
        tmp.write_text(json.dumps(entry))
        tmp.replace(path)
        return path

    def remove_target(self, job: str, name: str) -> None:
        (self.config.targets_dir / f"{job}-{name}.json").unlink(missing_ok=True)
