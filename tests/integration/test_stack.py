"""`k2 up / status / down` on a private stack: idempotent, clear about ports, stops only its own."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from k2lib.config import K2Settings
from tests.helpers import run_k2

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        K2Settings.from_env().kafka_external,
        reason="K2_KAFKA_BOOTSTRAP names an external broker: these tests need K2 to own "
        "(start, stop, find the port of) its broker",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_up_is_idempotent_status_reports_and_down_stops_only_its_own(tmp_path: Path):
    env = {
        "K2_HOME": str(tmp_path / "home"),
        "K2_BROKER_PORT": str(free_port()),
        "K2_REDIS_PORT": str(free_port()),
    }
    bystander = socket.socket()
    bystander.bind(("127.0.0.1", 0))
    bystander.listen()
    try:
        first = run_k2("up", env=env)
        assert "broker   started" in first.stdout and "redis    started" in first.stdout
        again = run_k2("up", env=env)
        assert "already running" in again.stdout
        status = json.loads(run_k2("status", "--format", "json", env=env).stdout)
        assert all(s["healthy"] for s in status.values())
        assert status["catalog"]["detail"] == "market.trades: 0 rows"
        assert status["broker"]["endpoint"] == f"127.0.0.1:{env['K2_BROKER_PORT']}"
        down = run_k2("down", env=env)
        assert "broker   stopped" in down.stdout and "redis    stopped" in down.stdout
        after = run_k2("status", "--format", "json", env=env, check=False)
        assert after.returncode == 1
        assert not json.loads(after.stdout)["broker"]["healthy"]
        # the unrelated listener is untouched
        socket.create_connection(bystander.getsockname(), timeout=1).close()
    finally:
        run_k2("down", env=env, check=False)
        bystander.close()


def test_a_taken_port_is_a_clear_error_naming_it(tmp_path: Path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    env = {
        "K2_HOME": str(tmp_path / "home"),
        "K2_BROKER_PORT": str(port),
        "K2_REDIS_PORT": str(free_port()),
    }
    try:
        proc = run_k2("up", env=env, check=False)
        assert proc.returncode == 2
        assert f"port {port}" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        run_k2("down", env=env, check=False)
        taken.close()
