"""The cluster profile's settings: how it is chosen, what it points at, what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from k2lib.config import K2Settings, profile_path
from k2lib.errors import ConfigError, ServiceError
from k2lib.stack.postgres import find_postgres_bin

pytestmark = pytest.mark.unit


def test_single_is_the_default_and_keeps_the_sqlite_catalog(tmp_path: Path):
    s = K2Settings.from_env({"K2_HOME": str(tmp_path)})
    assert s.profile == "single"
    assert s.catalog_properties()["uri"].startswith("sqlite:///")


def test_k2_profile_cluster_points_at_postgres_and_three_local_nodes(tmp_path: Path):
    s = K2Settings.from_env({"K2_HOME": str(tmp_path), "K2_PROFILE": "cluster"})
    assert s.catalog_properties() == {
        "type": "sql",
        "uri": "postgresql+psycopg2://k2@127.0.0.1:15432/k2",
        "warehouse": f"file://{tmp_path}/warehouse",
    }
    assert s.redis_cluster_nodes == (
        ("127.0.0.1", 17000),
        ("127.0.0.1", 17001),
        ("127.0.0.1", 17002),
    )
    assert not s.redis_external


def test_the_recorded_profile_is_used_and_k2_profile_overrides_it(tmp_path: Path):
    profile_path(tmp_path).parent.mkdir(parents=True)
    profile_path(tmp_path).write_text("cluster\n")
    assert K2Settings.from_env({"K2_HOME": str(tmp_path)}).profile == "cluster"
    pinned = K2Settings.from_env({"K2_HOME": str(tmp_path), "K2_PROFILE": "single"})
    assert pinned.profile == "single"


def test_ports_and_external_nodes_are_read(tmp_path: Path):
    base = {"K2_HOME": str(tmp_path), "K2_PROFILE": "cluster"}
    s = K2Settings.from_env(
        {**base, "K2_REDIS_CLUSTER_PORTS": "21000, 21001,21002", "K2_POSTGRES_PORT": "21432"}
    )
    assert [p for _, p in s.redis_cluster_nodes] == [21000, 21001, 21002]
    assert s.postgres_uri.endswith("@127.0.0.1:21432/k2")
    ext = K2Settings.from_env({**base, "K2_REDIS_CLUSTER_NODES": "cache-1.example:6379"})
    assert ext.redis_external and ext.redis_cluster_nodes == (("cache-1.example", 6379),)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"K2_PROFILE": "cloud"}, "K2_PROFILE must be one of"),
        ({"K2_REDIS_CLUSTER_PORTS": "21000,21001"}, "needs 3 distinct ports"),
        ({"K2_REDIS_CLUSTER_PORTS": "21000,21000,21001"}, "needs 3 distinct ports"),
        ({"K2_REDIS_CLUSTER_PORTS": "21000,21001,60000"}, "bus port"),
        ({"K2_REDIS_CLUSTER_PORTS": "a,b,c"}, "comma-separated ports"),
        ({"K2_REDIS_CLUSTER_NODES": "nohost"}, "host:port"),
        ({"K2_REDIS_URL": "redis://127.0.0.1:6379/0"}, "K2_REDIS_CLUSTER_NODES"),
    ],
)
def test_bad_cluster_settings_are_clear_errors(tmp_path: Path, env: dict, message: str):
    profile = {} if "K2_PROFILE" in env else {"K2_PROFILE": "cluster"}
    with pytest.raises(ConfigError, match=message):
        K2Settings.from_env({"K2_HOME": str(tmp_path), **profile, **env})


def test_a_postgres_bin_dir_without_binaries_names_the_debian_package(tmp_path: Path):
    s = K2Settings.from_env(
        {"K2_HOME": str(tmp_path), "K2_PROFILE": "cluster", "K2_POSTGRES_BIN_DIR": str(tmp_path)}
    )
    with pytest.raises(ServiceError) as err:
        find_postgres_bin(s)
    assert "`postgresql` package" in str(err.value)
    assert "apt-get install" in str(err.value) and str(tmp_path) in str(err.value)
