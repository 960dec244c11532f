"""Clients of the outside services: Kafka admin, Redis (single or cluster), the catalog.

The core (ingestion, query, API, demo) reaches the services through this module only;
`k2lib.stack` starts and stops the local ones and is never imported by the core.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import cast

import redis
from confluent_kafka.admin import AdminClient, NewTopic
from pyiceberg.catalog import Catalog, load_catalog
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from k2lib.config import SECRET_KEYS, K2Settings
from k2lib.errors import ServiceError

__all__ = [
    "CLUSTER_SLOTS",
    "ClusterHealth",
    "broker_healthy",
    "broker_problem",
    "cluster_client",
    "cluster_health",
    "create_topics",
    "host_port",
    "load_k2_catalog",
    "node_client",
    "port_open",
    "redis_client",
    "redis_healthy",
    "redis_problem",
    "topic_id",
    "topic_partitions",
    "without_secrets",
]

CLUSTER_SLOTS = 16384


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def host_port(endpoint: str, default_port: int) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return (host or "127.0.0.1"), int(port or default_port)


def node_client(settings: K2Settings, host: str, port: int, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis(
        host=host,
        port=port,
        password=settings.redis_password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )


def cluster_info(client: redis.Redis) -> dict[str, str]:
    """CLUSTER INFO as a dict (redis-py parses it; older versions return the text)."""
    raw = client.execute_command("CLUSTER INFO")
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)


@dataclass(frozen=True, slots=True)
class ClusterHealth:
    ok: bool
    masters: int
    slots_ok: int
    detail: str


def cluster_health(settings: K2Settings, timeout: float = 1.0) -> ClusterHealth:
    """What CLUSTER INFO says on every seed node: healthy when all of them report
    cluster_state ok with every slot served."""
    masters, slots_ok = 0, 0
    for host, port in settings.redis_cluster_nodes:
        try:
            with node_client(settings, host, port, timeout) as client:
                info = cluster_info(client)
        except redis.RedisError as exc:
            return ClusterHealth(False, 0, 0, f"{host}:{port}: {type(exc).__name__}: {exc}")
        masters = int(info.get("cluster_size", 0))
        slots_ok = int(info.get("cluster_slots_ok", 0))
        state = info.get("cluster_state", "?")
        if state != "ok" or slots_ok != CLUSTER_SLOTS:
            return ClusterHealth(
                False,
                masters,
                slots_ok,
                f"{host}:{port}: cluster_state {state}, {slots_ok}/{CLUSTER_SLOTS} slots ok",
            )
    return ClusterHealth(
        True, masters, slots_ok, f"cluster_state ok, {masters} masters, {slots_ok} slots"
    )


def cluster_client(settings: K2Settings, **kwargs: object) -> RedisCluster:
    """redis-py's cluster client on the seed nodes: it follows MOVED/ASK redirections.

    Bytes in and out (decode_responses=False), like the single-Redis client.
    """
    opts: dict[str, object] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
    if settings.redis_password:
        opts["password"] = settings.redis_password
    opts.update(kwargs)
    nodes = [ClusterNode(h, p) for h, p in settings.redis_cluster_nodes]
    return RedisCluster(startup_nodes=nodes, decode_responses=False, **opts)  # type: ignore[arg-type]


def redis_client(settings: K2Settings, **kwargs: object) -> redis.Redis:
    """A client for K2's Redis (URL credentials, else K2_REDIS_PASSWORD).

    On the cluster profile, redis-py's RedisCluster on the configured nodes (bytes in and
    out, like the single client); it follows the cluster's MOVED and ASK redirections.
    Typed as redis.Redis because RedisCluster answers the same commands and K2's callers
    are typed so; code that needs the difference checks `isinstance(c, RedisCluster)`.
    """
    if settings.profile == "cluster":
        return cast(redis.Redis, cluster_client(settings, **kwargs))
    opts: dict[str, object] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
    if settings.redis_password and "@" not in settings.redis_url:
        opts["password"] = settings.redis_password
    opts.update(kwargs)
    return redis.Redis.from_url(settings.redis_url, **opts)


def redis_problem(settings: K2Settings) -> str:
    """Why Redis does not answer PING, or "" when it does (no secret appears in it).

    On the cluster profile: why the cluster is not serving every slot on every node.
    """
    if settings.profile == "cluster":
        health = cluster_health(settings)
        return "" if health.ok else without_secrets(settings, health.detail)
    try:
        redis_client(settings, socket_timeout=1.0).ping()
        return ""
    except (redis.RedisError, RedisClusterException) as exc:
        return without_secrets(settings, f"{type(exc).__name__}: {exc}")


def redis_healthy(settings: K2Settings) -> bool:
    return not redis_problem(settings)


def broker_problem(settings: K2Settings, timeout: float = 2.0) -> str:
    """Why the broker does not answer a metadata request, or "" when it does.

    The reason is librdkafka's own (for example a SASL authentication failure), so
    `k2 status` can say more than "unhealthy". Secrets never appear in it.
    """
    host, port = host_port(settings.kafka_bootstrap.split(",")[0], 9092)
    if not port_open(host, port):
        return f"nothing listens on {host}:{port}"  # at once, without reconnect log lines
    errors: list[str] = []
    admin = AdminClient(
        settings.kafka_config(log_level=2, error_cb=lambda err: errors.append(err.str()))
    )
    try:
        admin.list_topics(timeout=timeout)
        return ""
    except Exception as exc:
        admin.poll(0)  # serve the error callbacks the failed request raised
        reason = next((e for e in errors if "brokers are down" not in e), str(exc))
        return without_secrets(settings, reason)


def broker_healthy(settings: K2Settings, timeout: float = 2.0) -> bool:
    return not broker_problem(settings, timeout)


def without_secrets(settings: K2Settings, text: str) -> str:
    """`text` with every secret K2 holds (Kafka SASL, Redis) masked."""
    secrets = [settings.kafka_extra.get(key) for key in SECRET_KEYS]
    for secret in [*secrets, settings.redis_password]:
        if secret:
            text = text.replace(str(secret), "***")
    return text


def create_topics(settings: K2Settings, topics: dict[str, int], timeout: float = 10.0) -> None:
    """Create topics that do not exist yet (partitions per topic). Idempotent."""
    admin = AdminClient(settings.kafka_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(name, num_partitions=parts, replication_factor=1)
        for name, parts in topics.items()
        if name not in existing
    ]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except Exception as exc:  # already exists from a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc).upper().replace(" ", "_"):
                raise ServiceError(f"cannot create topic {name}: {exc}") from exc


def topic_id(settings: K2Settings, topic: str, timeout: float = 10.0) -> str | None:
    """The broker's UUID for `topic` (a wiped and recreated topic gets a new one)."""
    from confluent_kafka import TopicCollection

    try:
        admin = AdminClient(settings.kafka_config())  # must outlive the future
        futures = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)
        uid = futures[topic].result().topic_id
    except Exception:  # a broker without topic ids: offsets alone decide
        return None
    if uid is None or (uid.get_most_significant_bits() | uid.get_least_significant_bits()) == 0:
        return None  # the zero UUID is Kafka's "no id" (noida-db answers it for every topic)
    return str(uid)


def topic_partitions(settings: K2Settings, topic: str, timeout: float = 10.0) -> int:
    md = AdminClient(settings.kafka_config()).list_topics(topic, timeout=timeout)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise ServiceError(f"topic {topic!r} does not exist on {settings.kafka_bootstrap}")
    return len(meta.partitions)


def load_k2_catalog(settings: K2Settings) -> Catalog:
    """`load_catalog(settings.catalog_name)` with the local defaults unless configured."""
    props = settings.catalog_properties()
    if props:
        settings.warehouse.mkdir(parents=True, exist_ok=True)
    return load_catalog(settings.catalog_name, **props)
