"""Security basics: a password-protected Redis works through K2's config, services bind to
loopback, and no secret reaches summaries, status or logs."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from k2lib.config import K2Settings
from k2lib.stack import LocalStack
from tests.helpers import run_k2

pytestmark = [pytest.mark.integration, pytest.mark.phase2]

SECRET = "k2-test-s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def protected_redis(tmp_path: Path, stack_settings: K2Settings):
    port = free_port()
    env = {
        "K2_HOME": str(tmp_path),
        "K2_REDIS_PORT": str(port),
        "K2_REDIS_PASSWORD": SECRET,
        "K2_KAFKA_BOOTSTRAP": stack_settings.kafka_bootstrap,
    }
    settings = K2Settings.from_env(env)
    stack = LocalStack(settings)
    stack.start_service("redis")
    yield settings, env
    stack.stop_service("redis")


def test_redis_requirepass_is_enforced_and_k2_passes_it(protected_redis):
    settings, env = protected_redis
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=int(env["K2_REDIS_PORT"])).ping()
    status = run_k2("status", "--format", "json", env=env, check=False)
    assert '"redis": {"detail": "", "endpoint"' in status.stdout
    assert '"healthy": true' in status.stdout.split('"redis"')[1]
    assert SECRET not in status.stdout and SECRET not in status.stderr
    log = Path(settings.state_dir / "redis.log").read_text()
    assert SECRET not in log


def test_password_in_url_is_redacted_everywhere(tmp_path: Path):
    s = K2Settings.from_env(
        {"K2_HOME": str(tmp_path), "K2_REDIS_URL": f"redis://:{SECRET}@127.0.0.1:1/0"}
    )
    assert SECRET not in str(s.redacted())


def test_services_listen_on_loopback_only(stack_settings: K2Settings):
    import psutil

    ours = {
        rec.pid
        for proc in LocalStack(stack_settings)._processes().values()
        if (rec := proc.running()) is not None
    }
    for conn in psutil.net_connections(kind="tcp"):
        if conn.pid in ours and conn.status == psutil.CONN_LISTEN:
            assert conn.laddr.ip in ("127.0.0.1", "::1"), conn


@pytest.fixture
def auth_broker():
    """A second Tansu broker that requires SASL from every client."""
    from k2lib.connect import port_open
    from k2lib.stack.services import tansu_binary

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    proc = subprocess.Popen(
        [*argv, "--storage-engine", "memory://tansu/", "--authentication"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):  # up to 10 s
            if port_open("127.0.0.1", port):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the SASL broker did not start listening within 10 s")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_kafka_sasl_settings_reach_the_broker(auth_broker, tmp_path: Path, stack_settings):
    """K2's SASL settings carry a SCRAM exchange to a broker that demands one.

    Tansu 0.6.0 keeps no SCRAM credentials a client can log in with (`tansu user create`
    stores none we could authenticate against), so the broker answers "unknown-user":
    that answer is only possible when K2's settings made the client speak SCRAM."""
    env = {
        "K2_HOME": str(tmp_path),
        "K2_KAFKA_BOOTSTRAP": f"127.0.0.1:{auth_broker}",
        "K2_REDIS_URL": stack_settings.redis_url,
    }
    plain = json.loads(run_k2("status", "--format", "json", env=env, check=False).stdout)
    assert plain["broker"]["healthy"] is False
    assert "SASL" not in plain["broker"]["detail"]

    sasl_env = {
        **env,
        "K2_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "K2_KAFKA_SASL_USERNAME": "k2-ingest",
        "K2_KAFKA_SASL_PASSWORD": SECRET,
    }
    proc = run_k2("status", "--format", "json", env=sasl_env, check=False)
    broker = json.loads(proc.stdout)["broker"]
    assert broker["healthy"] is False
    assert "SASL SCRAM authentication failed" in broker["detail"]
    assert "unknown-user" in broker["detail"]
    assert SECRET not in proc.stdout and SECRET not in proc.stderr
