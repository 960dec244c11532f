"""The live degradation demo: real load and real faults against the live stack.

`ChaosRun` runs `k2 ingest`'s pipeline in a background thread (`harness.BackgroundIngest`)
and applies, in order (all
trades from one seeded feed, so each symbol's ids stay one session):

1. a slow Iceberg commit (the next commits stall; batch latency climbs);
2. a burst: a synthetic replay at full rate into the stalled consumer (lag climbs, low
   tiers are shed to the spill), then a trickle;
3. a Redis outage (the Redis-backed stages fail, the breaker opens, records are deferred),
   then Redis comes back (a half-open probe closes the breaker, the level steps down).

It waits for the level to return to NORMAL and the spill to drain, then reads the table
back: `exactly_once` is true when every unique record sent is stored once.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from k2lib.config import K2Settings
from k2lib.connect import create_topics
from k2lib.demo.harness import (
    BackgroundIngest,
    CommitStall,
    exactly_once_check,
    resilient_pipeline,
    resilient_settled,
)
from k2lib.feeds.base import SourceReport
from k2lib.feeds.faults import FaultSpec
from k2lib.feeds.synthetic import SyntheticConfig, SyntheticFeed
from k2lib.ingestion.pipeline import IngestPipeline
from k2lib.monitoring import new_registry
from k2lib.resilience.levels import DegradationLevel
from k2lib.resilience.manager import DegradationConfig
from k2lib.resilience.signals import INF, Thresholds
from k2lib.stack import LocalStack
from k2lib.stack.process import recorded_process
from k2lib.wire.schema import TradeBatch

__all__ = ["DEMO_DEGRADATION", "EXTRA_SCENARIOS", "ChaosConfig", "ChaosRun"]

# Laptop-sized thresholds and a short dwell, so the whole cascade fits in a demo.
DEMO_DEGRADATION = DegradationConfig(
    lag=Thresholds(enter=(10_000, 25_000, 80_000, INF), exit=(3_000, 10_000, 25_000, INF)),
    latency=Thresholds(enter=(1.0, 2.5, 8.0, INF), exit=(0.5, 1.0, 4.0, INF)),
    min_dwell_s=2.0,
)
SCENARIOS = ("burst", "slow_commit", "redis_outage")
# Also available, not in the default run (it stalls every client of the local broker):
# "broker_freeze" stops the broker process (SIGSTOP) for `broker_freeze_s`.
EXTRA_SCENARIOS = ("broker_freeze",)


@dataclass(frozen=True, kw_only=True)
class ChaosConfig:
    burst_records: int = 250_000
    trickle_records: int = 20_000
    slow_commit_s: float = 3.0
    slow_commits: int = 3
    redis_outage_s: float = 8.0
    broker_freeze_s: float = 8.0
    settle_timeout_s: float = 60.0
    seed: int = 21
    scenarios: tuple[str, ...] = SCENARIOS
    degradation: DegradationConfig = field(default_factory=lambda: DEMO_DEGRADATION)


class _Slice:
    """The next `records` trades of a running feed, as a FeedSource for `replay`."""

    def __init__(self, batches: Iterator[TradeBatch], records: int, label: str) -> None:
        self._batches, self._records = batches, records
        self.name = f"synthetic ({label})"
        self.report = SourceReport()

    def batches(self, chunk: int = 10_000) -> Iterator[TradeBatch]:
        while self.report.records < self._records:
            batch = next(self._batches, None)
            if batch is None:
                return
            self.report.records += len(batch)
            yield batch


class ChaosRun:
    """One demo run on its own topic and table (so it can be repeated on a live stack)."""

    def __init__(
        self,
        settings: K2Settings,
        config: ChaosConfig = ChaosConfig(),
        *,
        registry: CollectorRegistry | None = None,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        tag = uuid.uuid4().hex[:8]
        self.settings = settings.with_(
            topic=f"chaos.{tag}", dlq_topic=f"chaos.{tag}.dlq", table=f"chaos.t_{tag}"
        )
        self.base = settings
        self.config = config
        self.registry = registry if registry is not None else new_registry()
        self.log = log
        self.events: list[dict[str, Any]] = []
        self._t0 = time.monotonic()
        self._stall = CommitStall(config.slow_commit_s)

    def _event(self, what: str, **detail: Any) -> None:
        entry = {"at_s": round(time.monotonic() - self._t0, 2), "event": what, **detail}
        self.events.append(entry)
        self.log(f"[{entry['at_s']:6.1f}s] {what} {detail if detail else ''}".rstrip())

    def run(self) -> dict[str, Any]:
        s, cfg = self.settings, self.config
        create_topics(s, {s.topic: s.partitions, s.dlq_topic: 1})
        pipeline, self.stages = resilient_pipeline(s, self.registry, cfg.degradation, self._stall)
        self.ingest = BackgroundIngest(pipeline, name="k2-chaos-ingest").start()
        self._event("ingest started", topic=s.topic, table=s.table)
        # Let NORMAL's minimum dwell pass, so the burst's lag can move the level at once.
        time.sleep(cfg.degradation.min_dwell_s + 0.5)
        # One feed for the whole run, so each symbol's trade ids stay one session.
        total = cfg.burst_records + 2 * cfg.trickle_records
        self._feed = SyntheticFeed(
            SyntheticConfig(seed=cfg.seed, records=total, symbols=40)
        ).batches(10_000)
        if "slow_commit" in cfg.scenarios:
            # The object store slows down first; the burst then finds the consumer stalled.
            self._stall.arm(cfg.slow_commits)
            self._event("slow commit", seconds=cfg.slow_commit_s, commits=cfg.slow_commits)
        if "burst" in cfg.scenarios:
            self._publish(cfg.burst_records, "burst")
            self._wait_level(DegradationLevel.SOFT, timeout=20)
        self._publish(cfg.trickle_records, "trickle")
        if "redis_outage" in cfg.scenarios and not self.base.redis_external:
            stack = LocalStack(self.base)
            self._event("redis stopped")
            stack.stop_service("redis")
            self._publish(cfg.trickle_records, "during outage")
            time.sleep(cfg.redis_outage_s)
            stack.start_service("redis")
            self._event("redis started")
        if "broker_freeze" in cfg.scenarios and not self.base.kafka_external:
            self._freeze_broker(cfg.broker_freeze_s)
        settled = self._settle(pipeline)
        result = self.ingest.stop()
        check = exactly_once_check(s, self.ingest.sent_unique)
        self._event("exactly-once check", **check)
        return {
            **result,
            **check,
            "settled": settled,
            "events": self.events,
            "topic": s.topic,
            "table": s.table,
        }

    def _freeze_broker(self, seconds: float) -> None:
        record = recorded_process(self.base.state_dir, "broker")
        running = record.running() if record is not None else None
        if running is None:
            self._event("broker freeze skipped: no local broker recorded")
            return
        self._event("broker frozen", seconds=seconds)
        os.kill(running.pid, signal.SIGSTOP)
        try:
            self._wait_level(DegradationLevel.CIRCUIT_BREAK, timeout=seconds)
            time.sleep(max(0.0, seconds - 1.0))
        finally:
            os.kill(running.pid, signal.SIGCONT)
        self._event("broker resumed")

    def _publish(self, records: int, label: str) -> None:
        summary = self.ingest.publish(
            _Slice(self._feed, records, label), self.settings, faults=FaultSpec()
        )
        self._event(
            f"published {label}", records=summary["records"], rate_msg_s=summary["rate_msg_s"]
        )

    def _wait_level(self, at_least: DegradationLevel, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.stages.manager.level < at_least:
            time.sleep(0.1)
        self._event("level", level=self.stages.manager.level.name)

    def _settle(self, pipeline: IngestPipeline) -> bool:
        """Wait for NORMAL, an empty spill and no lag (bounded)."""
        if self.ingest.wait_for(
            lambda: resilient_settled(pipeline, self.stages, lambda: pipeline.consumer.lag() == 0),
            timeout_s=self.config.settle_timeout_s,
            poll_s=0.25,
        ):
            self._event("settled", level=self.stages.manager.level.name)
            return True
        self._event(
            "not settled",
            level=self.stages.manager.level.name,
            pending=self.stages.spill.pending_rows(),
        )
        return False
