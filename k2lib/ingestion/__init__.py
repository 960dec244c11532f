"""Ingestion: Kafka -> decode/validate -> shed -> sequence -> dedup -> Iceberg, exactly once.

- `pipeline.IngestPipeline`: polls, buffers and overlaps each compare-and-set commit with the
  next poll (`committer`); `IngestPipeline.from_settings` builds it on the real services;
  `membership`: where each partition starts, and a group member's rebalances;
- `seams`: its settings and the protocols of its source and sink; `stages.Stages`: the hooks
  the full stages (`resilient.ResilientStages`) plug into; `health`: their breaker-guarded
  calls, probes, signals and status;
- `consumer.TradeConsumer`, `dlq.DeadLetterQueue`: the Kafka side;
- `state`: the Redis state as a cache of the table (synced, verified, rebuilt);
- `sequence/`, `dedup/`: the sequence tracker and the two-tier deduplicator.
"""

from k2lib.ingestion.pipeline import IngestPipeline
from k2lib.ingestion.seams import IngestConfig, default_group
from k2lib.ingestion.stages import Stages

__all__ = ["IngestConfig", "IngestPipeline", "Stages", "default_group"]
