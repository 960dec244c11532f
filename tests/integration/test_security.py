"""Security basics: a password-protected Redis works through K2's config, services bind to
loopback, and no secret reaches summaries, status or logs."""

from __future__ import annotations

import socket
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
