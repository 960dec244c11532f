"""Where K2's services live. One frozen settings object, read once from the environment.

Every endpoint can point outside this machine: `K2_KAFKA_BOOTSTRAP`, `K2_REDIS_URL`
and a pyiceberg catalog named `K2_CATALOG_NAME` (default `k2`, configured the usual
pyiceberg way: `~/.pyiceberg.yaml` or `PYICEBERG_CATALOG__K2__...`). Where none is
set, the local stack under `K2_HOME` is used.

The stack has two profiles (docs/decisions/012-cluster-profile.md): `single` (one Redis,
the SQLite catalog) and `cluster` (a Redis Cluster, the catalog on PostgreSQL). The profile
is `K2_PROFILE` when set, else the one `k2 up --cluster` recorded in `K2_HOME/run/profile`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from k2lib.errors import ConfigError

__all__ = [
    "DEFAULT_BROKER_PORT",
    "DEFAULT_POSTGRES_PORT",
    "DEFAULT_REDIS_CLUSTER_PORTS",
    "DEFAULT_REDIS_PORT",
    "PROFILES",
    "K2Settings",
    "profile_path",
]

DEFAULT_HOME = ".k2"
DEFAULT_BROKER_PORT = 19092
DEFAULT_REDIS_PORT = 16379
DEFAULT_METRICS_PORT = 9464
DEFAULT_API_PORT = 8042
DEFAULT_TOPIC = "market.trades"
DEFAULT_TABLE = "market.trades"
DEFAULT_PARTITIONS = 4
DEFAULT_REDIS_CLUSTER_PORTS = (17000, 17001, 17002)
DEFAULT_POSTGRES_PORT = 15432
PROFILES = ("single", "cluster")
# Redis Cluster's bus listens on port + 10000 (fixed before Redis 7); 3 masters at least.
CLUSTER_BUS_OFFSET = 10000
MIN_CLUSTER_NODES = 3
SECRET_KEYS = ("sasl.password", "password")


@dataclass(frozen=True, kw_only=True)
class K2Settings:
    """Endpoints and names. Build with `K2Settings.from_env()`; change with `.with_(...)`."""

    home: Path = Path(DEFAULT_HOME)
    kafka_bootstrap: str = f"127.0.0.1:{DEFAULT_BROKER_PORT}"
    kafka_external: bool = False
    kafka_extra: Mapping[str, str] = field(default_factory=dict)
    redis_url: str = f"redis://127.0.0.1:{DEFAULT_REDIS_PORT}/0"
    redis_external: bool = False
    redis_password: str | None = None
    catalog_name: str = "k2"
    catalog_external: bool = False
    topic: str = DEFAULT_TOPIC
    dlq_topic: str = f"{DEFAULT_TOPIC}.dlq"
    table: str = DEFAULT_TABLE
    partitions: int = DEFAULT_PARTITIONS
    metrics_port: int = DEFAULT_METRICS_PORT
    api_port: int = DEFAULT_API_PORT
    profile: str = "single"
    # Cluster profile: the Redis Cluster's seed nodes (started by `k2 up` unless external),
    # and the PostgreSQL that holds the catalog (binaries from postgres_bin_dir when set).
    redis_cluster_nodes: tuple[tuple[str, int], ...] = tuple(
        ("127.0.0.1", p) for p in DEFAULT_REDIS_CLUSTER_PORTS
    )
    postgres_port: int = DEFAULT_POSTGRES_PORT
    postgres_bin_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> K2Settings:
        env = os.environ if env is None else env
        home = Path(env.get("K2_HOME", DEFAULT_HOME)).expanduser().resolve()
        extra: dict[str, str] = {}
        mechanism = env.get("K2_KAFKA_SASL_MECHANISM")
        if mechanism:
            extra = {
                "security.protocol": env.get("K2_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
                "sasl.mechanism": mechanism,
                "sasl.username": env.get("K2_KAFKA_SASL_USERNAME", ""),
                "sasl.password": env.get("K2_KAFKA_SASL_PASSWORD", ""),
            }
        broker_port = _int(env, "K2_BROKER_PORT", DEFAULT_BROKER_PORT)
        redis_port = _int(env, "K2_REDIS_PORT", DEFAULT_REDIS_PORT)
        profile = env.get("K2_PROFILE") or recorded_profile(home) or "single"
        if "K2_REDIS_CLUSTER_NODES" in env:
            cluster_nodes = _nodes(env["K2_REDIS_CLUSTER_NODES"])
        else:
            ports = _ports(env, "K2_REDIS_CLUSTER_PORTS", DEFAULT_REDIS_CLUSTER_PORTS)
            cluster_nodes = tuple(("127.0.0.1", p) for p in ports)
        on_cluster = profile == "cluster"
        bin_dir = env.get("K2_POSTGRES_BIN_DIR")
        settings = cls(
            home=home,
            kafka_bootstrap=env.get("K2_KAFKA_BOOTSTRAP", f"127.0.0.1:{broker_port}"),
            kafka_external="K2_KAFKA_BOOTSTRAP" in env,
            kafka_extra=extra,
            redis_url=env.get("K2_REDIS_URL", f"redis://127.0.0.1:{redis_port}/0"),
            redis_external=("K2_REDIS_CLUSTER_NODES" if on_cluster else "K2_REDIS_URL") in env,
            redis_password=env.get("K2_REDIS_PASSWORD") or None,
            catalog_name=env.get("K2_CATALOG_NAME", "k2"),
            catalog_external=_has_catalog_config(env.get("K2_CATALOG_NAME", "k2"), env),
            topic=env.get("K2_TOPIC", DEFAULT_TOPIC),
            dlq_topic=env.get("K2_DLQ_TOPIC", env.get("K2_TOPIC", DEFAULT_TOPIC) + ".dlq"),
            table=env.get("K2_TABLE", DEFAULT_TABLE),
            partitions=_int(env, "K2_PARTITIONS", DEFAULT_PARTITIONS),
            metrics_port=_int(env, "K2_METRICS_PORT", DEFAULT_METRICS_PORT),
            api_port=_int(env, "K2_API_PORT", DEFAULT_API_PORT),
            profile=profile,
            redis_cluster_nodes=cluster_nodes,
            postgres_port=_int(env, "K2_POSTGRES_PORT", DEFAULT_POSTGRES_PORT),
            postgres_bin_dir=Path(bin_dir).expanduser() if bin_dir else None,
        )
        if on_cluster and "K2_REDIS_URL" in env:
            raise ConfigError(
                "K2_REDIS_URL names a single Redis, but the profile is 'cluster': "
                "use K2_REDIS_CLUSTER_NODES for an external Redis Cluster"
            )
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> K2Settings:
        """A copy with some fields changed (tests use uuid-named topics and tables)."""
        return replace(self, **changes)

    def validate(self) -> None:
        if self.partitions < 1:
            raise ConfigError(f"partitions must be >= 1, got {self.partitions}")
        if "." not in self.table:
            raise ConfigError(f"table must be 'namespace.name', got {self.table!r}")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"K2_REDIS_URL must be a redis:// URL, got {self.redis_url!r}")
        if self.profile not in PROFILES:
            raise ConfigError(f"K2_PROFILE must be one of {PROFILES}, got {self.profile!r}")
        if self.profile == "cluster":
            self._validate_cluster()

    def _validate_cluster(self) -> None:
        nodes = self.redis_cluster_nodes
        if len(set(nodes)) != len(nodes) or len(nodes) < (
            1 if self.redis_external else MIN_CLUSTER_NODES
        ):
            raise ConfigError(
                f"the Redis Cluster needs {MIN_CLUSTER_NODES} distinct ports "
                f"(K2_REDIS_CLUSTER_PORTS), got {[p for _, p in nodes]}"
            )
        for _, port in nodes:
            if not self.redis_external and not 0 < port < 65536 - CLUSTER_BUS_OFFSET:
                raise ConfigError(
                    f"Redis Cluster port {port} leaves no room for its bus port "
                    f"(port + {CLUSTER_BUS_OFFSET}): choose ports below "
                    f"{65536 - CLUSTER_BUS_OFFSET}"
                )
        if not 0 < self.postgres_port < 65536:
            raise ConfigError(f"K2_POSTGRES_PORT must be a TCP port, got {self.postgres_port}")

    # -- derived paths and client configs -------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.home / "run"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse"

    @property
    def redis_prefix(self) -> str:
        """Redis keys of this feed and table (sequence state, dedup keys, status) live under
        it: the state is a cache of what one table holds (k2lib.ingestion.state)."""
        return f"k2:{self.topic}:{self.table}:"

    @property
    def sequence_prefix(self) -> str:
        return f"{self.redis_prefix}seq:"

    @property
    def dedup_prefix(self) -> str:
        return f"{self.redis_prefix}dedup:"

    @property
    def status_key(self) -> str:
        return f"{self.redis_prefix}degradation"

    def kafka_config(self, **overrides: Any) -> dict[str, Any]:
        """Base librdkafka config: bootstrap plus any SASL settings, then overrides."""
        conf: dict[str, Any] = {"bootstrap.servers": self.kafka_bootstrap}
        conf.update(self.kafka_extra)
        conf.update(overrides)
        return conf

    @property
    def postgres_uri(self) -> str:
        """The cluster profile's catalog database (loopback only, see ADR 012 on trust)."""
        return f"postgresql+psycopg2://k2@127.0.0.1:{self.postgres_port}/k2"

    def catalog_properties(self) -> dict[str, str]:
        """pyiceberg properties for the local SqlCatalog; empty when configured externally."""
        if self.catalog_external:
            return {}
        uri = (
            self.postgres_uri
            if self.profile == "cluster"
            else f"sqlite:///{self.warehouse / 'catalog.db'}"
        )
        return {"type": "sql", "uri": uri, "warehouse": f"file://{self.warehouse}"}

    def redacted(self) -> dict[str, Any]:
        """A printable view with every secret masked (for logs, status and summaries)."""
        extra = {k: ("***" if k in SECRET_KEYS else v) for k, v in self.kafka_extra.items()}
        return {
            "home": str(self.home),
            "kafka_bootstrap": self.kafka_bootstrap,
            "kafka_extra": extra,
            "profile": self.profile,
            "redis_url": redact_url(self.redis_url),
            "catalog": self.catalog_name,
            "topic": self.topic,
            "table": self.table,
        }


def redact_url(url: str) -> str:
    """`redis://:secret@host:1/0` -> `redis://:***@host:1/0`."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0] if ":" in creds else ""
    return f"{scheme}://{user}:***@{host}"


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{key} must be an integer, got {raw!r}") from exc


def profile_path(home: Path) -> Path:
    """Where `k2 up --cluster` records the profile of this K2_HOME."""
    return home / "run" / "profile"


def recorded_profile(home: Path) -> str | None:
    try:
        return profile_path(home).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def _ports(env: Mapping[str, str], key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = env.get(key)
    if raw is None:
        return default
    try:
        return tuple(int(p) for p in raw.replace(" ", "").split(",") if p)
    except ValueError as exc:
        raise ConfigError(f"{key} must be comma-separated ports, got {raw!r}") from exc


def _nodes(raw: str) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in raw.replace(" ", "").split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"K2_REDIS_CLUSTER_NODES must be host:port,..., got {raw!r}")
        nodes.append((host, int(port)))
    return tuple(nodes)


def _has_catalog_config(name: str, env: Mapping[str, str]) -> bool:
    prefix = f"PYICEBERG_CATALOG__{name.upper()}__"
    if any(k.startswith(prefix) for k in env):
        return True
    from pyiceberg.utils.config import Config

    return bool(Config().get_catalog_config(name))
