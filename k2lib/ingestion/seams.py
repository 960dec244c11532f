"""The pipeline's settings and the seams its collaborators plug into.

`TradeSource` is the Kafka side (`consumer.TradeConsumer`, or `k2lib.testing.ListSource`),
`TableSink` the Iceberg side (`k2lib.storage.writer.IcebergWriter`); the DLQ's seam is
`dlq.DeadLetterSink` and the stages' is `stages.Stages`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from k2lib.config import K2Settings
from k2lib.storage.maintenance import MaintenanceConfig
from k2lib.storage.table import SnapshotOffsets
from k2lib.storage.writer import CommitResult
from k2lib.wire.schema import TradeBatch

__all__ = ["IngestConfig", "IngestCounts", "TableSink", "TradeSource", "default_group"]


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    poll_max: int = 20_000
    poll_timeout_s: float = 0.5
    commit_rows: int = 250_000
    commit_interval_s: float = 2.0
    group_id: str = "k2-ingest"
    group: bool = False
    """Join `group_id` and share the topic's partitions with the other members (several
    `k2 ingest` processes); otherwise read `partitions` (default all) alone."""
    partitions: tuple[int, ...] | None = None
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    final_commit_attempts: int = 30


def default_group(settings: K2Settings) -> str:
    """The consumer group of every `k2 ingest` of one topic into one table."""
    return f"k2-ingest.{settings.topic}.{settings.table}"


class TradeSource(Protocol):
    """The Kafka side: `TradeConsumer`, or a list-backed twin in unit tests."""

    topic: str
    partitions: list[int]
    resets: list[int]

    def assign(self, start: Mapping[int, int]) -> None: ...
    def poll(self, max_messages: int, timeout_s: float) -> Any: ...
    def lag(self) -> int: ...
    def commit(self, offsets: Mapping[int, int]) -> None: ...
    def close(self) -> None: ...
    def topic_recreated(self) -> Any: ...
    def rewind(self, change: Any) -> None: ...
    def subscribe(self, listener: Any) -> None: ...
    @property
    def topic_id(self) -> str | None: ...


class TableSink(Protocol):
    """The Iceberg side: `IcebergWriter`, whose commit is compare-and-set on the offsets."""

    table: Any
    topic_id: str | None
    base: SnapshotOffsets
    delay_s: Callable[[], float] | None

    def rebase(self) -> SnapshotOffsets: ...
    def adopt(self, partitions: Collection[int]) -> SnapshotOffsets: ...
    def release(self, partitions: Collection[int]) -> None: ...
    @property
    def partitions(self) -> list[int]: ...
    def commit(
        self,
        batch: TradeBatch,
        offsets: Mapping[int, int],
        extra_properties: Mapping[str, str] | None = None,
    ) -> CommitResult: ...


@dataclass
class IngestCounts:
    """What a run did, for its summary."""

    consumed: int = 0
    written: int = 0
    dlq: int = 0
    commits: int = 0
    failed_commits: int = 0
    rewinds: int = 0
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    rewind_reasons: dict[str, int] = field(default_factory=dict)

    def dead_lettered(self, reasons: list[str]) -> None:
        self.dlq += len(reasons)
        for reason in reasons:
            self.dlq_reasons[reason] = self.dlq_reasons.get(reason, 0) + 1

    def rewound(self, reason: str) -> None:
        self.rewinds += 1
        self.rewind_reasons[reason] = self.rewind_reasons.get(reason, 0) + 1

    def summary(
        self, resets: Collection[int], offsets: Mapping[int, int], elapsed: float
    ) -> dict[str, Any]:
        """The run's summary before the stages add theirs (which set `duplicates`, `gaps`)."""
        return {
            "consumed": self.consumed,
            "written": self.written,
            "duplicates": 0,
            "gaps": 0,
            "dlq": self.dlq,
            "dlq_reasons": self.dlq_reasons,
            "commits": self.commits,
            "failed_commits": self.failed_commits,
            "rewinds": self.rewinds,
            "rewind_reasons": self.rewind_reasons,
            "broker_resets": sorted(set(resets)),
            "offsets": {str(p): o for p, o in sorted(offsets.items())},
            "elapsed_s": round(elapsed, 3),
            "rate_msg_s": round(self.consumed / elapsed, 1) if elapsed > 0 else 0.0,
        }
