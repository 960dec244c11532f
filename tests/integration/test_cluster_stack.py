"""`k2 up --cluster` on a private K2_HOME and private ports: a 3-node Redis Cluster and a
PostgreSQL catalog, real processes, never the shared stack.

PostgreSQL runs as the unprivileged user `k2pg` when the tests run as root, and must be able
to enter K2_HOME; pytest's tmp_path sits below a 0700 directory, so the shared home here is
made below /tmp with mode 0755 (and removed afterwards).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pyarrow as pa
import pytest
from redis.cluster import RedisCluster

from k2lib.config import CLUSTER_BUS_OFFSET, K2Settings
from k2lib.connect import cluster_health, load_k2_catalog, redis_client
from k2lib.errors import ServiceError
from k2lib.stack.cluster import cluster_node_processes, ensure_cluster
from k2lib.stack.postgres import find_postgres_bin
from k2lib.stack.services import redis_binary
from tests.helpers import run_k2

pytestmark = [pytest.mark.integration]


def _postgres_missing() -> str:
    try:
        find_postgres_bin(K2Settings())
        return ""
    except ServiceError as exc:
        return str(exc)


needs_postgres = pytest.mark.skipif(
    bool(_postgres_missing()),
    reason="PostgreSQL not installed (scripts/system-deps.sh installs Debian's postgresql)",
)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(count: int, *, with_bus: bool = False) -> list[int]:
    """`count` consecutive free ports (and their cluster bus ports, port + 10000)."""
    for _ in range(200):
        base = random.randrange(20000, 29000)
        ports = list(range(base, base + count))
        wanted = ports + ([p + CLUSTER_BUS_OFFSET for p in ports] if with_bus else [])
        if all(_free(p) for p in wanted):
            return ports
    raise RuntimeError("no free ports")


def cluster_env(home: Path) -> dict[str, str]:
    broker, postgres = free_ports(2)
    return {
        "K2_HOME": str(home),
        "K2_BROKER_PORT": str(broker),
        "K2_POSTGRES_PORT": str(postgres),
        "K2_REDIS_CLUSTER_PORTS": ",".join(map(str, free_ports(3, with_bus=True))),
    }


@pytest.fixture(scope="module")
def reachable_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="k2-cluster-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_stack(reachable_dir: Path) -> Iterator[dict[str, str]]:
    if _postgres_missing():
        pytest.skip(_postgres_missing())
    env = cluster_env(reachable_dir / "home")
    try:
        first = run_k2("up", "--cluster", env=env)
        assert "postgres started" in first.stdout
        assert "cluster  formed" in first.stdout
        yield env
    finally:
        run_k2("down", env=env, check=False)


def settings_of(env: dict[str, str]) -> K2Settings:
    # No K2_PROFILE: the profile comes from what `k2 up --cluster` recorded.
    return K2Settings.from_env({**os.environ, **env})


@needs_postgres
def test_up_again_is_idempotent_and_status_names_postgres_and_cluster(cluster_stack):
    again = run_k2("up", env=cluster_stack)  # no flag: the recorded profile
    assert "postgres already running" in again.stdout
    assert "cluster  ready" in again.stdout
    status = json.loads(run_k2("status", "--format", "json", env=cluster_stack).stdout)
    assert set(status) == {"broker", "cluster", "postgres", "catalog"}
    assert all(s["healthy"] for s in status.values()), status
    ports = cluster_stack["K2_REDIS_CLUSTER_PORTS"].split(",")
    assert status["cluster"]["endpoint"] == ",".join(f"127.0.0.1:{p}" for p in ports)
    assert status["cluster"]["masters"] == 3
    assert all(psutil.pid_exists(pid) for pid in status["cluster"]["pids"])
    assert status["postgres"]["endpoint"] == f"127.0.0.1:{cluster_stack['K2_POSTGRES_PORT']}"
    assert psutil.Process(status["postgres"]["pid"]).name() == "postgres"
    assert status["catalog"]["endpoint"].startswith("postgresql+psycopg2://")
    assert status["catalog"]["detail"] == "market.trades: 0 rows"


@needs_postgres
def test_an_iceberg_table_is_created_appended_and_read_back_on_the_postgres_catalog(
    cluster_stack,
):
    import psycopg2

    settings = settings_of(cluster_stack)
    assert settings.profile == "cluster"
    name = f"test.pg_{uuid.uuid4().hex[:10]}"
    rows = pa.table({"symbol": ["BHP", "CBA", "NAB"], "seq": pa.array([1, 2, 3], pa.int64())})
    catalog = load_k2_catalog(settings)
    catalog.create_namespace_if_not_exists("test")
    table = catalog.create_table(name, schema=rows.schema)
    table.append(rows)
    table.append(rows.slice(0, 1))
    # A second catalog client, as another process would see it.
    back = load_k2_catalog(settings).load_table(name).scan().to_arrow().sort_by("seq")
    assert back.column("seq").to_pylist() == [1, 1, 2, 3]
    assert back.column("symbol").to_pylist() == ["BHP", "BHP", "CBA", "NAB"]
    # The catalog row is in PostgreSQL, not in a SQLite file.
    conn = psycopg2.connect(host="127.0.0.1", port=settings.postgres_port, user="k2", dbname="k2")
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM iceberg_tables WHERE table_name = %s", (name[5:],))
        assert cur.fetchone() == (1,)
    conn.close()
    assert not (settings.warehouse / "catalog.db").exists()
    # The same database named the pyiceberg way (as a shared PostgreSQL would be): an
    # external catalog, so the cluster profile has no PostgreSQL of its own to show.
    # (pyiceberg reads PYICEBERG_* once at import: hence a fresh `k2` process. SqlCatalog
    # keys its rows by catalog name, so the name stays `k2`.)
    shared = {
        **cluster_stack,
        "PYICEBERG_CATALOG__K2__TYPE": "sql",
        "PYICEBERG_CATALOG__K2__URI": settings.postgres_uri,
        "PYICEBERG_CATALOG__K2__WAREHOUSE": f"file://{settings.warehouse}",
    }
    proc = run_k2("status", "--format", "json", env=shared, check=False)
    status = json.loads(proc.stdout)
    assert proc.returncode == 0, status
    assert set(status) == {"broker", "cluster", "catalog"}
    assert status["catalog"] == {
        "healthy": True,
        "endpoint": "pyiceberg catalog 'k2'",
        "managed": False,
        "pid": None,
        "detail": "market.trades: 0 rows",
    }


@needs_postgres
def test_the_redis_cluster_has_three_masters_and_redis_py_spans_its_slots(cluster_stack):
    settings = settings_of(cluster_stack)
    client = redis_client(settings)
    assert isinstance(client, RedisCluster)
    for host, port in settings.redis_cluster_nodes:
        node = client.get_redis_connection(client.get_node(host, port))
        info = node.execute_command("CLUSTER INFO")
        assert info["cluster_state"] == "ok" and info["cluster_size"] == "3"
    assert len(client.get_primaries()) == 3
    tag = uuid.uuid4().hex[:8]
    keys = [f"test:{tag}:{i}".encode() for i in range(60)]
    for i, key in enumerate(keys):
        client.set(key, i.to_bytes(2, "big"))
    assert [client.get(k) for k in keys] == [i.to_bytes(2, "big") for i in range(60)]
    owners = {client.get_node_from_key(k).name for k in keys}
    assert len(owners) == 3  # the keys live on every master, reached through redirections
    client.delete(*keys)  # RedisCluster splits a multi-key delete per slot
    assert client.exists(*keys) == 0
    client.close()
    # An external cluster given by one seed node: the client finds the other two.
    host, port = settings.redis_cluster_nodes[1]
    outside = K2Settings.from_env(
        {"K2_HOME": cluster_stack["K2_HOME"], "K2_REDIS_CLUSTER_NODES": f"{host}:{port}"}
    )
    assert outside.redis_external
    ext = redis_client(outside)
    assert len(ext.get_primaries()) == 3 and cluster_health(outside).ok
    ext.close()


@needs_postgres
def test_down_stops_every_process_of_both_profiles_and_nothing_else(cluster_stack):
    env = cluster_stack
    bystander = socket.socket()
    bystander.bind(("127.0.0.1", 0))
    bystander.listen()
    try:
        # The single profile on the same home adds its own Redis beside the cluster.
        single = {**env, "K2_PROFILE": "single", "K2_REDIS_PORT": str(free_ports(1)[0])}
        assert "redis    started" in run_k2("up", env=single).stdout
        run_dir = Path(env["K2_HOME"]) / "run"
        pids = {p.stem: json.loads(p.read_text())["pid"] for p in run_dir.glob("*.json")}
        owned_broker = [] if settings_of(env).kafka_external else ["broker"]
        assert set(pids) == {
            *owned_broker,
            "redis",
            "postgres",
            *(f"redis-cluster-{p}" for p in env["K2_REDIS_CLUSTER_PORTS"].split(",")),
        }
        down = run_k2("down", env=env)
        for name in pids:
            assert f"{name:8s} stopped" in down.stdout, down.stdout
        for name, pid in pids.items():
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", name
        after = run_k2("status", "--format", "json", env=single, check=False)
        assert after.returncode == 1
        # `k2 up` recorded `single` last, so status shows that profile's services, down
        # (its SQLite catalog is a file, and stays readable).
        shown = json.loads(after.stdout)
        assert set(shown) == {"broker", "redis", "catalog"}
        assert not shown["redis"]["healthy"]
        # `k2 down` never touches an external broker: it is still up.
        assert shown["broker"]["healthy"] is not bool(owned_broker)
        socket.create_connection(bystander.getsockname(), timeout=1).close()
    finally:
        bystander.close()


def test_a_missing_postgresql_names_the_package_and_starts_nothing(tmp_path: Path):
    env = {**cluster_env(tmp_path / "home"), "K2_POSTGRES_BIN_DIR": str(tmp_path)}
    proc = run_k2("up", "--cluster", env=env, check=False)
    try:
        assert proc.returncode == 2, proc.stderr
        assert "`postgresql` package" in proc.stderr and "apt-get install" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not list((tmp_path / "home" / "run").glob("*.json"))
    finally:
        run_k2("down", env=env, check=False)


@needs_postgres
def test_a_taken_cluster_bus_port_is_named(reachable_dir: Path):
    env = cluster_env(reachable_dir / f"bus-{uuid.uuid4().hex[:6]}")
    bus = int(env["K2_REDIS_CLUSTER_PORTS"].split(",")[1]) + CLUSTER_BUS_OFFSET
    taken = socket.socket()
    taken.bind(("127.0.0.1", bus))
    taken.listen()
    try:
        proc = run_k2("up", "--cluster", env=env, check=False)
        assert proc.returncode == 2, proc.stderr
        assert f"port {bus}" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        run_k2("down", env=env, check=False)
        taken.close()


@needs_postgres
@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to user k2pg")
def test_a_home_the_postgres_user_cannot_enter_is_a_clear_error(tmp_path: Path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    env = cluster_env(private / "home")
    try:
        proc = run_k2("up", "--cluster", env=env, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "cannot enter" in proc.stderr and "k2pg" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        run_k2("down", env=env, check=False)


def test_without_redis_cli_the_cluster_is_formed_by_meet_and_addslots(reachable_dir: Path):
    ports = free_ports(3, with_bus=True)
    settings = K2Settings.from_env(
        {
            "K2_HOME": str(reachable_dir / "py-formed"),
            "K2_PROFILE": "cluster",
            "K2_REDIS_CLUSTER_PORTS": ",".join(map(str, ports)),
        }
    )
    procs = cluster_node_processes(settings, redis_binary())
    try:
        for proc in procs.values():
            proc.start()
        assert not cluster_health(settings).ok
        assert ensure_cluster(settings, redis_cli=None) == "formed"
        health = cluster_health(settings)
        assert health.ok and health.masters == 3 and health.slots_ok == 16384
        assert ensure_cluster(settings, redis_cli=None) == "ready"  # idempotent
        client = redis_client(settings)
        client.set(b"{a}x", b"1")
        client.set(b"{b}x", b"2")
        assert client.get(b"{a}x") == b"1" and client.get(b"{b}x") == b"2"
        client.close()
    finally:
        for proc in procs.values():
            proc.stop()


@needs_postgres
def test_three_workers_on_the_cluster_profile_store_every_trade_once(cluster_stack, tmp_path):
    """Issue 12's schedule on the distributed parts: three `k2 ingest` workers in one group,
    one SIGKILLed and restarted, one joining late, one frozen past its session timeout,
    while a faulty feed arrives; the state on the Redis Cluster is wiped once. Checked on
    the raw table (PostgreSQL catalog), `k2 gaps` and the DLQ, then one hybrid query."""
    from k2lib.connect import create_topics
    from k2lib.query import HybridQueryEngine
    from tests.helpers import stored_keys
    from tests.integration.schedules import Schedule
    from tests.integration.test_exactly_once import check

    # An earlier test of this module stops the stack and records the single profile.
    run_k2("up", "--cluster", env=cluster_stack)
    tag = uuid.uuid4().hex[:10]
    env = {
        **cluster_stack,
        "K2_TOPIC": f"test.cl.{tag}",
        "K2_DLQ_TOPIC": f"test.cl.{tag}.dlq",
        "K2_TABLE": f"test.cl_{tag}",
        "K2_METRICS_PORT": "0",
    }
    settings = settings_of(env)
    create_topics(settings, {settings.topic: settings.partitions, settings.dlq_topic: 1})
    schedule = Schedule(
        seed=1212,
        messages=20_000,
        faults="dup=0.01,gap=0.001,reorder=0.005,poison=0.001",
        rate=5_000,
        writers=3,
        commit_interval=0.2,
        events=((0.8, "wipe"), (1.2, "zombie"), (1.6, "kill"), (2.0, "join")),
    )
    check(schedule, settings, env, tmp_path)
    keys = stored_keys(settings)
    symbol = keys[0][1]
    with HybridQueryEngine(settings) as engine:
        result = engine.query(symbol, 0, 2**62)
    assert result.rows.num_rows == sum(1 for k in keys if k[1] == symbol)
    assert result.provenance.duplicates_removed == 0
