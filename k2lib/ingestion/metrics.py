"""The ingest pipeline's own metrics, on the registry its owner passes in."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["IngestMetrics"]


@dataclass(frozen=True)
class IngestMetrics:
    consumed: Counter
    written: Counter
    dlq: Counter
    duplicates: Counter
    commits: Counter
    commit_seconds: Histogram
    batch_seconds: Histogram
    rate: Gauge
    table_rows: Gauge
    commit_failures: Counter
    rewinds: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> IngestMetrics:
        return cls(
            consumed=Counter(
                "k2_ingest_messages_consumed", "Messages polled from Kafka", registry=registry
            ),
            written=Counter(
                "k2_ingest_records_written", "Records committed to Iceberg", registry=registry
            ),
            dlq=Counter(
                "k2_ingest_dlq_messages", "Poison messages sent to the DLQ", registry=registry
            ),
            duplicates=Counter(
                "k2_ingest_duplicates_dropped", "Duplicate records dropped", registry=registry
            ),
            commits=Counter("k2_ingest_commits", "Iceberg commits", registry=registry),
            commit_seconds=Histogram(
                "k2_ingest_commit_seconds",
                "Iceberg commit duration",
                registry=registry,
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            ),
            batch_seconds=Histogram(
                "k2_ingest_batch_seconds",
                "Time to process one poll",
                registry=registry,
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            ),
            rate=Gauge(
                "k2_ingest_rate_messages_per_second", "Recent ingest rate", registry=registry
            ),
            table_rows=Gauge(
                "k2_ingest_table_rows_written_run", "Rows this run has committed", registry=registry
            ),
            commit_failures=Counter(
                "k2_ingest_commit_failures",
                "Commits that failed or were postponed (rows kept for the next one)",
                registry=registry,
            ),
            rewinds=Counter(
                "k2_ingest_rewinds",
                "Buffers dropped to restart from the table (fenced commit, Redis state lost)",
                registry=registry,
            ),
        )
