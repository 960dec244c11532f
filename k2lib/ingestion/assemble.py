"""The real collaborators of an ingest process, built from its settings."""

from __future__ import annotations

import time
from collections.abc import Callable

from pyiceberg.catalog import Catalog

from k2lib.config import K2Settings
from k2lib.ingestion.consumer import TradeConsumer
from k2lib.ingestion.dlq import DeadLetterQueue
from k2lib.ingestion.seams import IngestConfig
from k2lib.stack.catalog import load_k2_catalog
from k2lib.storage.table import ensure_table
from k2lib.storage.writer import IcebergWriter

__all__ = ["build_collaborators"]


def build_collaborators(
    settings: K2Settings,
    config: IngestConfig,
    *,
    catalog: Catalog | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[TradeConsumer, IcebergWriter, DeadLetterQueue]:
    """The Kafka consumer, the compare-and-set writer on the table, and the DLQ producer."""
    table = ensure_table(catalog or load_k2_catalog(settings), settings.table)
    consumer = TradeConsumer(settings, group_id=config.group_id, partitions=config.partitions)
    writer = IcebergWriter(
        table,
        settings.topic,
        partitions=consumer.partitions,
        topic_id=consumer.topic_id,
        clock=clock,
    )
    return consumer, writer, DeadLetterQueue(settings)
