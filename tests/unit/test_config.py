"""Settings from the environment, and secrets kept out of printable views."""

from __future__ import annotations

from pathlib import Path

import pytest

from k2lib.config import K2Settings
from k2lib.errors import ConfigError

pytestmark = [pytest.mark.unit]


def test_defaults_point_at_the_local_stack(tmp_path: Path):
    s = K2Settings.from_env({"K2_HOME": str(tmp_path)})
    assert s.kafka_bootstrap == "127.0.0.1:19092" and not s.kafka_external
    assert s.redis_url.startswith("redis://127.0.0.1:") and s.topic == "market.trades"
    assert s.table == "market.trades"
    assert s.catalog_properties()["uri"].endswith("warehouse/catalog.db")


def test_external_endpoints_and_sasl_pass_through(tmp_path: Path):
    s = K2Settings.from_env(
        {
            "K2_HOME": str(tmp_path),
            "K2_KAFKA_BOOTSTRAP": "kafka.internal:9092",
            "K2_REDIS_URL": "redis://:s3cret@cache:6379/1",
            "K2_KAFKA_SASL_MECHANISM": "PLAIN",
            "K2_KAFKA_SASL_USERNAME": "k2",
            "K2_KAFKA_SASL_PASSWORD": "hunter2",
            "PYICEBERG_CATALOG__K2__URI": "http://rest:8181",
        }
    )
    assert s.kafka_external and s.redis_external and s.catalog_external
    conf = s.kafka_config(**{"group.id": "g"})
    assert conf["sasl.password"] == "hunter2" and conf["group.id"] == "g"
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    assert s.catalog_properties() == {}
    shown = str(s.redacted())
    assert "hunter2" not in shown and "s3cret" not in shown and "***" in shown


@pytest.mark.parametrize(
    "env",
    [
        {"K2_PARTITIONS": "0"},
        {"K2_PARTITIONS": "x"},
        {"K2_TABLE": "nonamespace"},
        {"K2_REDIS_URL": "http://x"},
    ],
)
def test_bad_settings_are_clear_errors(env, tmp_path: Path):
    with pytest.raises(ConfigError):
        K2Settings.from_env({"K2_HOME": str(tmp_path), **env})


def test_status_reasons_name_the_endpoint_and_hide_secrets(tmp_path: Path):
    import socket

    from k2lib.connect import broker_problem, redis_problem

    with socket.socket() as sock:  # a port nothing listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = K2Settings.from_env(
        {
            "K2_HOME": str(tmp_path),
            "K2_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
            "K2_REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "K2_REDIS_PASSWORD": "hunter2",
        }
    )
    assert broker_problem(s) == f"nothing listens on 127.0.0.1:{port}"
    reason = redis_problem(s)
    assert reason.startswith("ConnectionError") and str(port) in reason
    assert "hunter2" not in reason
