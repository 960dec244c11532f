"""`k2 bench ingest`: K2's end-to-end ingest against raw consume + decode, same topic, same run.

Both read the same pre-published topic from offset 0:

- baseline: confluent-kafka `assign()` + `consume()` + `decode_batch` (no storage), with
  the consumer settings and poll size K2 uses;
- K2: the ingest pipeline, Kafka -> decode/validate -> Iceberg commit (250k-row commits);
- detail: the same with the full stages (sequence tracking, dedup, degradation) when
  they are available.
"""

from __future__ import annotations

import resource
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from k2lib.config import K2Settings
from k2lib.feeds.publisher import replay
from k2lib.feeds.synthetic import SyntheticConfig, SyntheticFeed
from k2lib.ingestion.consumer import CONSUMER_DEFAULTS
from k2lib.resilience.manager import DegradationConfig
from k2lib.resilience.signals import INF, Thresholds
from k2lib.stack.services import create_topics
from k2lib.wire.codec import decode_batch

__all__ = ["run"]

_OFF = Thresholds(enter=(INF, INF, INF, INF), exit=(INF, INF, INF, INF))
NO_DEGRADATION = DegradationConfig(lag=_OFF, latency=_OFF, rss=_OFF)


def _raw_consume(settings: K2Settings, topic: str, expected: int, poll_max: int) -> float:
    """The same client settings and poll size K2 uses, with nothing after the decode."""
    consumer = Consumer(
        settings.kafka_config(
            **{**CONSUMER_DEFAULTS, "statistics.interval.ms": 0},
            **{"group.id": f"bench-{uuid.uuid4().hex[:6]}"},
        )
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    started = time.perf_counter()
    got = 0
    deadline = started + 120
    while got < expected and time.perf_counter() < deadline:
        msgs = consumer.consume(poll_max, timeout=1.0)
        values = [m.value() for m in msgs if m.error() is None]
        if values:
            got += len(decode_batch(values).batch)
    seconds = time.perf_counter() - started
    consumer.close()
    return got / seconds


def _pipeline(settings: K2Settings, records: int, full: bool) -> dict[str, Any]:
    from k2lib.ingestion.pipeline import IngestConfig, IngestPipeline
    from k2lib.ingestion.runtime import build_stages
    from k2lib.monitoring import new_registry

    registry = new_registry()
    # Full stages with degradation off: a benchmark backlog is not a reason to shed.
    stages = build_stages(settings, registry, degradation=NO_DEGRADATION) if full else None
    pipeline = IngestPipeline.from_settings(
        settings, registry=registry, stages=stages, config=IngestConfig(commit_interval_s=30.0)
    )
    started = time.perf_counter()
    summary = pipeline.run(max_messages=records)
    summary["bench_seconds"] = time.perf_counter() - started
    return summary


def run(settings: K2Settings, *, records: int = 1_000_000, seed: int = 5) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    topic = settings.with_(
        topic=f"bench.ingest.{tag}",
        dlq_topic=f"bench.ingest.{tag}.dlq",
        table=f"bench.ingest_{tag}",
    )
    create_topics(topic, {topic.topic: topic.partitions, topic.dlq_topic: 1})
    start_us = 1_723_161_600_000_000
    feed = SyntheticFeed(SyntheticConfig(seed=seed, records=records, start_us=start_us))
    published = replay(feed, topic)
    from k2lib.ingestion.pipeline import IngestConfig

    baseline = _raw_consume(topic, topic.topic, records, IngestConfig().poll_max)
    plain = _pipeline(topic, records, full=False)
    value = plain["written"] / plain["bench_seconds"]
    full_topic = topic.with_(table=f"bench.ingest_full_{tag}")
    full = _pipeline(full_topic, records, full=True)
    return {
        "name": "ingest",
        "value": round(value, 1),
        "unit": "msg/s",
        "baseline": round(baseline, 1),
        "baseline_label": "confluent-kafka consume + K2 decode of the same topic (no storage)",
        "ratio": round(value / baseline, 3),
        "records": records,
        "publish_rate_msg_s": published["rate_msg_s"],
        "k2_seconds": round(plain["bench_seconds"], 3),
        "commits": plain["commits"],
        "full_stages_msg_s (dedup + sequence, degradation off)": round(
            full["written"] / full["bench_seconds"], 1
        ),
        "full_stages_duplicates": full.get("duplicates", 0),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "target": ">= 200,000 msg/s end to end and ratio >= 0.5",
    }
