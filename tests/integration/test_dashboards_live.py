"""Every Grafana dashboard query returns a series on a healthy run, read from a real
Prometheus (Debian's) scraping a real `k2 ingest` and `k2 api` on their metrics ports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from k2lib.config import K2Settings
from k2lib.errors import PortInUseError
from k2lib.monitoring.prometheus_api import PrometheusClient
from k2lib.stack.prometheus import PrometheusConfig, PrometheusService
from tests.helpers import run_k2

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
RECORDS = 5_000
# Bounded waits: a loaded 2-core machine is slow, a broken query never becomes non-empty.
READY_S = 60.0
SERIES_S = 90.0

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus not installed (scripts/system-deps.sh installs Debian's prometheus)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _walk_targets(node: object, kind: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        if "expr" in node and isinstance(node["expr"], str):
            yield kind, node["expr"]
        for key, value in node.items():
            yield from _walk_targets(value, "annotation" if key == "annotations" else kind)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_targets(item, kind)


def dashboard_queries() -> list[tuple[str, str]]:
    return [q for path in DASHBOARDS for q in _walk_targets(json.loads(path.read_text()), "panel")]


def test_the_dashboards_have_queries() -> None:
    kinds = [kind for kind, _ in dashboard_queries()]
    assert DASHBOARDS and kinds.count("panel") >= 20


def _wait_http(url: str, proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + READY_S
    while True:
        try:
            httpx.get(url, timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            assert proc.poll() is None, f"{what} exited: {proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, f"{what} did not serve {url}"
            time.sleep(0.2)


def _k2(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "k2lib.cli.main", *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@needs_prometheus
def test_every_dashboard_query_returns_a_series_on_a_healthy_run(
    k2_settings: K2Settings, k2_env: dict[str, str], tmp_path: Path
) -> None:
    ingest_port, api_port = free_port(), free_port()
    env = {**k2_env, "K2_METRICS_PORT": str(ingest_port), "K2_API_PORT": str(api_port)}
    run_k2("replay", "synthetic", "--limit", str(RECORDS), "--seed", "7", env=env)
    prometheus = PrometheusService(
        PrometheusConfig(
            home=tmp_path,
            state_dir=tmp_path / "run",
            port=free_port(),
            ingest_port=ingest_port,
            api_port=api_port,
        )
    )
    ingest = _k2(["ingest"], env)
    api = _k2(["api", "--port", str(api_port)], env)
    try:
        assert prometheus.start() == "started"
        _wait_http(f"http://127.0.0.1:{ingest_port}/metrics", ingest, "k2 ingest")
        _wait_http(f"http://127.0.0.1:{api_port}/metrics", api, "k2 api")
        httpx.get(f"http://127.0.0.1:{api_port}/v1/health", timeout=10)  # one API request
        client = PrometheusClient(prometheus.config.url)
        # Healthy: both targets up and every record replayed is in the table.
        deadline = time.monotonic() + SERIES_S
        while True:
            up = {s["metric"]["job"]: s["value"][1] for s in client.query("up")}
            written = client.query("sum(k2_ingest_records_written_total)")
            done = written and float(written[0]["value"][1]) >= RECORDS
            if (up == {"k2-ingest": "1", "k2-api": "1"} and done) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert up == {"k2-ingest": "1", "k2-api": "1"}
        assert done, f"ingest wrote {written} of {RECORDS}"
        assert client.query("max(k2_degradation_level)")[0]["value"][1] == "0"

        empty: list[str] = []
        for kind, expr in dashboard_queries():
            series = client.query(expr)  # also: every query is valid PromQL
            while kind == "panel" and not series and time.monotonic() < deadline:
                time.sleep(0.5)  # rate() needs two scrapes of a counter
                series = client.query(expr)
            if kind == "panel" and not series:
                empty.append(expr)
        assert not empty, f"{len(empty)} dashboard queries returned no series: {empty}"
    finally:
        _stop(ingest)
        _stop(api)
        prometheus.stop()


@needs_prometheus
def test_k2_up_monitoring_starts_prometheus_status_shows_it_and_down_stops_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        "K2_HOME": str(tmp_path / "home"),
        "K2_BROKER_PORT": str(free_port()),
        "K2_REDIS_PORT": str(free_port()),
        "K2_PROMETHEUS_PORT": str(port),
        "K2_METRICS_PORT": "9464",
        "K2_API_PORT": "8042",
    }
    try:
        assert "prometheus" not in run_k2("up", env=env).stdout  # only with --monitoring
        status = json.loads(run_k2("status", "--format", "json", env=env).stdout)
        assert "prometheus" not in status
        up = run_k2("up", "--monitoring", env=env)
        assert "prometheus started" in up.stdout
        status = json.loads(run_k2("status", "--format", "json", env=env).stdout)
        assert status["prometheus"]["healthy"] and status["prometheus"]["managed"]
        assert status["prometheus"]["endpoint"] == f"http://127.0.0.1:{port}"
        rules = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5).json()["data"]
        loaded = {rule["name"] for group in rules["groups"] for rule in group["rules"]}
        assert "K2MetricsTargetDown" in loaded and "K2Degraded" in loaded
        config = (tmp_path / "home" / "prometheus" / "prometheus.yml").read_text()
        assert "127.0.0.1:9464" in config and "127.0.0.1:8042" in config
        assert "prometheus already running" in run_k2("up", "--monitoring", env=env).stdout
        down = run_k2("down", env=env)
        assert "prometheus stopped" in down.stdout
        status = json.loads(run_k2("status", "--format", "json", env=env, check=False).stdout)
        assert "prometheus" not in status
    finally:
        run_k2("down", env=env, check=False)


@needs_prometheus
def test_a_taken_prometheus_port_is_named_and_a_missing_binary_names_the_package(
    tmp_path: Path,
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    service = PrometheusService(
        PrometheusConfig(home=tmp_path, state_dir=tmp_path / "run", port=port)
    )
    try:
        with pytest.raises(PortInUseError, match=f"port {port}.*K2_PROMETHEUS_PORT"):
            service.start()
    finally:
        taken.close()
    env = {
        "K2_HOME": str(tmp_path / "home"),
        "K2_BROKER_PORT": str(free_port()),
        "K2_REDIS_PORT": str(free_port()),
        "PATH": str(tmp_path / "nothing-here"),
    }
    try:
        proc = run_k2("up", "--monitoring", env=env, check=False)
        assert proc.returncode == 2
        assert "package `prometheus`" in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "home" / "run" / "broker.json").exists()  # checked first
    finally:
        run_k2("down", env={**env, "PATH": os.environ["PATH"]}, check=False)
