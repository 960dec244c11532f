"""The live local stack for integration tests: started once per session, never mocked.

Each test gets its own uuid-named topic and table, so tests never see each other's data.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from k2lib.config import DEFAULT_BROKER_PORT, K2Settings
from k2lib.connect import create_topics, host_port
from k2lib.stack import LocalStack
from k2lib.stack.services import redis_binary
from tests.helpers import MemoryBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def stack_settings() -> K2Settings:
    settings = K2Settings.from_env()
    LocalStack(settings).up()  # idempotent; a failure here fails the session loudly
    return settings


def fresh_feed(stack_settings: K2Settings) -> K2Settings:
    """Settings for a new uuid-named topic (created), DLQ topic and table."""
    tag = uuid.uuid4().hex[:10]
    settings = stack_settings.with_(
        topic=f"test.trades.{tag}",
        dlq_topic=f"test.trades.{tag}.dlq",
        table=f"test.trades_{tag}",
    )
    create_topics(settings, {settings.topic: settings.partitions, settings.dlq_topic: 1})
    return settings


def feed_env(settings: K2Settings) -> dict[str, str]:
    """Environment that points a `k2` subprocess at `settings`' topic and table, and at its
    broker when that is one of K2's own (the stack's or a test's MemoryBroker)."""
    env = {
        "K2_HOME": str(settings.home),
        "K2_TOPIC": settings.topic,
        "K2_DLQ_TOPIC": settings.dlq_topic,
        "K2_TABLE": settings.table,
        "K2_METRICS_PORT": "0",
    }
    if not settings.kafka_external:
        env["K2_BROKER_PORT"] = str(host_port(settings.kafka_bootstrap, DEFAULT_BROKER_PORT)[1])
    return env


@pytest.fixture
def k2_settings(stack_settings: K2Settings) -> Iterator[K2Settings]:
    yield fresh_feed(stack_settings)


@pytest.fixture
def k2_env(k2_settings: K2Settings) -> dict[str, str]:
    """Environment that points a `k2` subprocess at this test's topic and table."""
    return feed_env(k2_settings)


@pytest.fixture
def own_broker(stack_settings: K2Settings, tmp_path: Path) -> Iterator[MemoryBroker]:
    """A memory broker of this test's own, for a test that restarts it (the stack's broker
    is shared by every test running at the same time)."""
    if stack_settings.kafka_external:
        pytest.skip("the broker is external: K2 will not restart it")
    with MemoryBroker(stack_settings, tmp_path / "broker") as broker:
        yield broker


@pytest.fixture
def own_feed(own_broker: MemoryBroker) -> K2Settings:
    """Like `k2_settings`, on `own_broker`."""
    return fresh_feed(own_broker.settings)


@pytest.fixture
def own_env(own_feed: K2Settings) -> dict[str, str]:
    return feed_env(own_feed)


@pytest.fixture(scope="session")
def redis_url(stack_settings: K2Settings) -> str:
    return stack_settings.redis_url


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A raw redis-py client on the stack's Redis (tests give their keys a uuid prefix)."""
    r = redis.Redis.from_url(redis_url)
    yield r
    r.close()


CLUSTER_NODES = 3
CLUSTER_READY_S = 30.0


class LocalRedisCluster:
    """`CLUSTER_NODES` redis-server primaries in cluster mode (the binary K2 runs), data dirs
    under `root`, joined by `redis-cli --cluster create`. Test scaffolding only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        server = Path(redis_binary())
        cli = server.with_name("redis-cli")
        self.ports = _free_cluster_ports(CLUSTER_NODES)
        for port in self.ports:
            data = self.root / str(port)
            data.mkdir()
            self._procs.append(
                subprocess.Popen(
                    [
                        str(server),
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--dir",
                        str(data),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    stdout=(data / "redis.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + CLUSTER_READY_S
        for port in self.ports:
            while not _pings(port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node on port {port} did not start")
                time.sleep(0.1)
        subprocess.run(
            [
                str(cli),
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=CLUSTER_READY_S,
        )
        while not all(_cluster_ok(p) for p in self.ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the test Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _free_cluster_ports(n: int) -> list[int]:
    """Ports free on loopback whose cluster bus port (+10000) is free too."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10_000 > 65_535 or port in ports:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        ports.append(port)
    return ports


def _pings(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_connect_timeout=0.2) as r:
            return bool(r.ping())
    except redis.RedisError:
        return False


def _cluster_ok(port: int) -> bool:
    with redis.Redis(port=port, decode_responses=True) as r:
        info = r.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
    return bool(info.get("cluster_state") == "ok")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """A 3-primary Redis Cluster of our own on free loopback ports, stopped at the end."""
    cluster = LocalRedisCluster(Path(tmp_path_factory.mktemp("redis-cluster")))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["single", "cluster"])
def redis_connect(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Callable[[], Any]]:
    """Opens a new client (a new process's view) on the stack's single Redis or on the test
    cluster; the tests that take it run on both profiles. Clients are closed afterwards."""
    opened: list[Any] = []

    def connect() -> Any:
        if request.param == "single":
            client: Any = redis.Redis.from_url(redis_url)
        else:
            cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
            client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()
