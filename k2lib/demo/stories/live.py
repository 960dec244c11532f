"""Notebook 03: a live ingest to watch, degrade by hand, load and break; then the proof.

`LiveIngest` runs the full pipeline (`ResilientStages`: degradation manager, load shedder,
deferred spill, Redis-backed dedup and sequence tracking, breakers) in a background thread
(`harness.BackgroundIngest`, as `k2 chaos` does) on the notebook's own topic and table,
serves its registry on a loopback `/metrics` port and scrapes it, exactly as Prometheus
would. The chaos actions are the real thing: a full-rate replay, a stalled Iceberg commit
(the writer's delay hook), and Redis stopped and started through the local stack.
`finish()` waits for the level to return to NORMAL and the spill to drain, stops, and reads
the table back for the exactly-once check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from k2lib.demo.chaos import DEMO_DEGRADATION
from k2lib.demo.context import DemoContext
from k2lib.demo.harness import (
    BackgroundIngest,
    CommitStall,
    exactly_once_check,
    resilient_pipeline,
    resilient_settled,
)
from k2lib.demo.sampling import MetricsScraper
from k2lib.demo.workspace import reset_workspace
from k2lib.feeds.faults import FaultSpec
from k2lib.feeds.synthetic import SyntheticConfig, SyntheticFeed
from k2lib.ingestion.runtime import serve_metrics
from k2lib.monitoring import new_registry
from k2lib.stack import LocalStack
from k2lib.viz.widgets import ChaosControl, LevelControl

__all__ = ["SCRAPED_METRICS", "LiveConfig", "LiveIngest", "LiveResult"]

SCRAPED_METRICS = (
    "k2_ingest_messages_consumed",
    "k2_ingest_records_written",
    "k2_consumer_lag_messages",
    "k2_degradation_level",
    "k2_batch_latency_seconds",
    "k2_shed_records",
    "k2_deferred_records",
    "k2_backfilled_records",
    "k2_deferred_pending_records",
    "k2_circuit_breaker_state",
    "k2_ingest_commit_seconds",
)


@dataclass(frozen=True, kw_only=True)
class LiveConfig:
    symbols: int = 40  # 2 tier-1, 8 tier-2 and 30 tier-3 symbols: every tier is visible
    baseline_records: int = 5_000  # below the SOFT lag threshold: the start stays NORMAL
    burst_records: int = 100_000
    trickle_records: int = 10_000
    slow_commit_s: float = 2.5
    slow_commits: int = 2
    redis_outage_s: float = 4.0
    catch_up_timeout_s: float = 30.0
    settle_timeout_s: float = 45.0
    seed: int = 21


@dataclass(frozen=True)
class LiveResult:
    sent_unique: int
    check: dict[str, Any]
    summary: dict[str, Any]
    metrics: pd.DataFrame
    transitions: list[dict[str, Any]]
    tiers: dict[str, Any]
    settled: bool
    duration_s: float
    events: list[tuple[float, str]]

    @property
    def shedding_balanced(self) -> bool:
        """Deferred = shed by the level + held while Redis was out; all of it backfilled."""
        t = self.tiers
        shed, deferred = sum(t["shed"].values()), sum(t["deferred"].values())
        return shed <= deferred and t["deferred"] == t["backfilled"] and not t.get("pending")

    def lines(self) -> list[str]:
        """Strict: every number here is fixed by the seeds, however the run was timed."""
        c = self.check
        verdict = "yes" if c["exactly_once"] else "NO"
        balanced = "yes" if self.shedding_balanced else "NO"
        return [
            f"sent {self.sent_unique:,} unique records; the table holds {c['rows']:,} rows, "
            f"{c['unique_keys']:,} distinct keys, {c['duplicate_rows']:,} stored twice",
            f"exactly once: {verdict}",
            f"every deferred record (shed, or held while Redis was out) backfilled: {balanced}",
            f"back to NORMAL with an empty spill: {'yes' if self.settled else 'NO'}",
        ]

    def tier_lines(self) -> list[str]:
        """Per-tier counts: they depend on timing (how long each level lasted)."""
        t = self.tiers
        return [
            f"tier {k}: shed {t['shed'][k]:,}  deferred {t['deferred'][k]:,}  "
            f"backfilled {t['backfilled'][k]:,}"
            for k in sorted(t["shed"])
        ]


class LiveIngest:
    """The running pipeline and its controls. Create, interact, then `finish()`."""

    def __init__(self, ctx: DemoContext, config: LiveConfig = LiveConfig()) -> None:
        self.config = config
        self.base = ctx.settings
        self.workspace = reset_workspace(ctx.settings, "monitor")
        s = self.workspace.settings
        self.registry = new_registry()
        self._stall = CommitStall(config.slow_commit_s)
        self.pipeline, self.stages = resilient_pipeline(
            s, self.registry, DEMO_DEGRADATION, self._stall
        )
        self.manager = self.stages.manager
        self.server = serve_metrics(self.registry, 0)
        self.metrics_url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        self.scraper = MetricsScraper(self.metrics_url, SCRAPED_METRICS).start()
        self._seed = config.seed
        self._t0 = time.monotonic()
        self.events: list[tuple[float, str]] = []  # (seconds on the scrape clock, what)
        self.ingest = BackgroundIngest(self.pipeline, name="k2-live-ingest").start()
        self.finished: LiveResult | None = None

    @property
    def sent_unique(self) -> int:
        return self.ingest.sent_unique

    def _mark(self, label: str) -> None:
        self.events.append((round(time.monotonic() - self.scraper.started_at, 2), label))

    # -- load -----------------------------------------------------------------------

    def publish(self, records: int, *, wait: bool = True) -> dict[str, Any]:
        """A seeded synthetic replay at full rate (each call a new seed, same every run)."""
        self._seed += 1
        feed = SyntheticFeed(
            SyntheticConfig(seed=self._seed, records=records, symbols=self.config.symbols)
        )
        summary = self.ingest.publish(
            feed, self.workspace.settings, faults=FaultSpec(), seed=self._seed
        )
        if wait:
            self.wait_consumed()
        return summary

    def wait_consumed(self, timeout_s: float | None = None) -> bool:
        """Until every published message has been polled (False on timeout)."""
        return self.ingest.wait_for(
            self.ingest.caught_up,
            timeout_s=timeout_s or self.config.catch_up_timeout_s,
            poll_s=0.05,
        )

    def start_line(self) -> str:
        summary = self.publish(self.config.baseline_records)
        return (
            f"live ingest running on its own topic and table, metrics served on "
            f"{self.metrics_url}; baseline {summary['records']:,} records ingested"
        )

    # -- chaos actions (each returns the line the widget prints) ---------------------

    def burst(self) -> str:
        self._mark("burst")
        s = self.publish(self.config.burst_records)
        return f"published {s['records']:,} records at full rate ({s['rate_msg_s']:,.0f} msg/s)"

    def slow_commit(self) -> str:
        self._mark("slow commit")
        self._stall.arm(self.config.slow_commits)
        s = self.publish(self.config.trickle_records)
        return (
            f"the next {self.config.slow_commits} Iceberg commits stall "
            f"{self.config.slow_commit_s:g}s each; {s['records']:,} records published"
        )

    def redis_outage(self) -> str:
        if self.base.redis_external:  # not ours to stop; the same records still arrive
            s = self.publish(self.config.trickle_records)
            return (
                f"Redis is external (K2_REDIS_URL), so K2 does not stop it; "
                f"{s['records']:,} records published"
            )
        stack = LocalStack(self.base)
        self._mark("redis stopped")
        stack.stop_service("redis")
        try:
            s = self.publish(self.config.trickle_records, wait=False)
            time.sleep(self.config.redis_outage_s)
        finally:
            stack.start_service("redis")
            self._mark("redis started")
        self.wait_consumed()
        return (
            f"Redis stopped for {self.config.redis_outage_s:g}s while "
            f"{s['records']:,} records arrived, then started again"
        )

    def actions(self) -> dict[str, Callable[[], str]]:
        return {
            "burst": self.burst,
            "slow commit": self.slow_commit,
            "redis outage": self.redis_outage,
        }

    def level_control(self) -> LevelControl:
        return LevelControl(self.manager)

    def chaos_control(self) -> ChaosControl:
        return ChaosControl(self.actions())

    # -- the end --------------------------------------------------------------------

    def _settled(self) -> bool:
        return resilient_settled(self.pipeline, self.stages, self.ingest.caught_up)

    def finish(self) -> LiveResult:
        """Hand the level back to the signals, wait until settled, stop, and check."""
        if self.finished is not None:
            return self.finished
        self.manager.force(None)
        self.ingest.wait_for(self._settled, timeout_s=self.config.settle_timeout_s, poll_s=0.2)
        settled = self._settled()
        time.sleep(1.5)  # let the last commit land and one more scrape see it
        try:
            summary = self.ingest.stop()
        finally:
            metrics = self.scraper.stop()
            self.server.shutdown()
        check = exactly_once_check(self.workspace.settings, self.sent_unique)
        self.finished = LiveResult(
            sent_unique=self.sent_unique,
            check=check,
            summary=dict(summary),
            metrics=metrics,
            transitions=self.manager.summary()["transitions"],
            tiers=self.stages.shedder.counts(),
            settled=settled,
            duration_s=round(time.monotonic() - self._t0, 1),
            events=list(self.events),
        )
        return self.finished
