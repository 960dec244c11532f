"""A notebook's own topic and table, reset at the start of every run.

The notebooks print exact counts, so each must start from nothing, on a fresh stack and on
the tenth re-run alike. The scheme:

- the table has a stable name per notebook (`demo.ingest`); a reset drops it (files too)
  and creates it again through the catalog;
- the topic is `demo.ingest.g<N>`, where N is a generation counter kept under `K2_HOME`
  and bumped by every reset. A new name never collides with the old topic, even where topic
  deletion is asynchronous (real Kafka) or a client still holds the old metadata. Redis
  state (sequence, dedup) is keyed by topic, so it starts empty too. The previous
  generations' topics, Redis keys and spill folders are deleted, best effort;
- nothing printed contains N, so the printed lines are the same on every run.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

from k2lib.config import K2Settings
from k2lib.connect import create_topics, load_k2_catalog, redis_client
from k2lib.storage.table import ensure_table

__all__ = ["Workspace", "reset_workspace"]

log = logging.getLogger("k2.demo")

NAMESPACE = "demo"
ADMIN_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Workspace:
    """Settings pointed at one notebook's topic and table, and the table itself."""

    name: str
    generation: int
    settings: K2Settings
    table: Table

    @property
    def label(self) -> str:
        """What notebooks print: stable across runs (no generation number)."""
        return f"topic {NAMESPACE}.{self.name}.* -> table {self.settings.table}"


def _generation_file(settings: K2Settings, name: str) -> Path:
    return settings.home / "demo" / f"{name}.generation"


def _bump_generation(settings: K2Settings, name: str) -> int:
    path = _generation_file(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        previous = int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        previous = 0
    path.write_text(str(previous + 1))
    return previous + 1


def _topic(name: str, generation: int) -> str:
    return f"{NAMESPACE}.{name}.g{generation}"


def _drop_old_generations(settings: K2Settings, name: str) -> None:
    """Delete earlier generations' topics, Redis keys and spill folders (best effort)."""
    prefix = f"{NAMESPACE}.{name}.g"
    try:
        admin = AdminClient(settings.kafka_config())
        topics = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        old = [t for t in topics if t.startswith(prefix)]
        if old:
            for future in admin.delete_topics(old, operation_timeout=ADMIN_TIMEOUT_S).values():
                future.result(timeout=ADMIN_TIMEOUT_S)
    except Exception as exc:  # housekeeping only: a leftover topic costs memory, not truth
        log.info("could not delete old demo topics: %s", exc)
    try:
        client = redis_client(settings)
        for key in client.scan_iter(match=f"k2:{prefix}*", count=1000):
            client.delete(key)
        client.close()
    except Exception as exc:
        log.info("could not delete old demo Redis keys: %s", exc)
    for folder in (settings.home / "spill").glob(f"{prefix}*"):
        shutil.rmtree(folder, ignore_errors=True)


def reset_workspace(base: K2Settings, name: str, *, partitions: int | None = None) -> Workspace:
    """A fresh, empty topic (+ DLQ) and table for notebook section `name`."""
    generation = _bump_generation(base, name)
    topic = _topic(name, generation)
    settings = base.with_(
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        table=f"{NAMESPACE}.{name.replace('-', '_')}",
        partitions=partitions or base.partitions,
    )
    catalog = load_k2_catalog(settings)
    try:
        catalog.purge_table(settings.table)
    except NoSuchTableError:
        pass
    except Exception as exc:  # a catalog without purge support still drops
        log.info("purge of %s failed (%s); dropping instead", settings.table, exc)
        with contextlib.suppress(NoSuchTableError):
            catalog.drop_table(settings.table)
    table = ensure_table(catalog, settings.table)
    _drop_old_generations(settings, name)  # before the new topic exists
    create_topics(settings, {settings.topic: settings.partitions, settings.dlq_topic: 1})
    return Workspace(name=name, generation=generation, settings=settings, table=table)
