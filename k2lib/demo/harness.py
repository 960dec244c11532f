"""The background-ingest harness: the pipeline in a thread while a replay publishes.

Chaos (`k2 chaos`), the notebooks' live stories and the soak bench all do the same thing:
run `IngestPipeline.run()` in a daemon thread, publish into its topic from the caller's
thread, wait (bounded) until the ingest is idle, stop it, and read the raw table back to
check that every unique record sent is stored exactly once.

    ingest = BackgroundIngest(pipeline).start()
    ingest.publish(feed, settings, rate=15_000)
    ingest.wait_for(ingest.caught_up, timeout_s=30)
    summary = ingest.stop()                    # re-raises what the pipeline thread raised
    check = exactly_once_check(settings, ingest.sent_unique)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from k2lib.clock import Clock
from k2lib.config import K2Settings
from k2lib.connect import load_k2_catalog
from k2lib.demo.readback import key_counts
from k2lib.feeds.base import FeedSource
from k2lib.feeds.publisher import replay
from k2lib.ingestion.pipeline import IngestConfig, IngestPipeline
from k2lib.ingestion.resilient import ResilientStages
from k2lib.resilience.levels import DegradationLevel
from k2lib.resilience.manager import DegradationConfig

__all__ = [
    "RESILIENT_INGEST",
    "BackgroundIngest",
    "CommitStall",
    "exactly_once_check",
    "resilient_pipeline",
    "resilient_settled",
]

# Bigger polls and commits than `k2 ingest`'s defaults, so a burst builds lag quickly.
RESILIENT_INGEST = IngestConfig(commit_rows=50_000, commit_interval_s=1.0, poll_max=20_000)
JOIN_TIMEOUT_S = 60.0


class CommitStall:
    """The Iceberg writer's delay hook: after `arm(n)`, the next n commits stall `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.left = 0

    def arm(self, commits: int) -> None:
        self.left = commits

    def __call__(self) -> float:
        if self.left > 0:
            self.left -= 1
            return self.seconds
        return 0.0


def resilient_pipeline(
    settings: K2Settings,
    registry: CollectorRegistry,
    degradation: DegradationConfig,
    stall: CommitStall,
) -> tuple[IngestPipeline, ResilientStages]:
    """The full pipeline with `ResilientStages` (degradation, shedding, spill, breakers), its
    Iceberg commits stalled by `stall`: what chaos and the live notebook break."""
    stages = ResilientStages.from_settings(settings, registry, degradation=degradation)
    pipeline = IngestPipeline.from_settings(
        settings, registry=registry, stages=stages, config=RESILIENT_INGEST
    )
    pipeline.writer.delay_s = stall
    return pipeline, stages


def resilient_settled(
    pipeline: IngestPipeline, stages: ResilientStages, caught_up: Callable[[], bool]
) -> bool:
    """Back to NORMAL, nothing left in the spill, caught up, and nothing buffered."""
    return (
        stages.manager.level == DegradationLevel.NORMAL
        and not stages.spill.pending_rows()
        and caught_up()
        and not pipeline.buffer
    )


def exactly_once_check(settings: K2Settings, expected_unique: int) -> dict[str, Any]:
    """Read the table back: rows, distinct keys, duplicates and the verdict."""
    counts, _ = key_counts(load_k2_catalog(settings).load_table(settings.table))
    return {
        **counts,
        "expected_unique": expected_unique,
        "exactly_once": counts["duplicate_rows"] == 0 and counts["unique_keys"] == expected_unique,
    }


class BackgroundIngest:
    """`pipeline.run()` in a daemon thread; the caller publishes, waits, then stops it."""

    def __init__(
        self,
        pipeline: IngestPipeline,
        *,
        name: str = "k2-background-ingest",
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pipeline = pipeline
        self.clock, self.sleep = clock, sleep
        self.published = 0  # messages sent so far (counted as they go, for samplers)
        self.sent_unique = 0  # unique records sent, what the exactly-once check expects
        self.result: dict[str, Any] = {}
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.result.update(self.pipeline.run())
        except BaseException as exc:  # raised again by stop(), not lost in a thread
            self.errors.append(exc)

    def start(self) -> BackgroundIngest:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def publish(self, feed: FeedSource, settings: K2Settings, **replay_args: Any) -> dict[str, Any]:
        """Replay `feed` into `settings.topic` (`replay`'s arguments); its summary."""
        progress = replay_args.pop("progress", None)

        def sent(n: int) -> None:
            self.published += n
            if progress is not None:
                progress(n)

        summary = replay(feed, settings, progress=sent, **replay_args)
        self.sent_unique += summary["records"]
        return summary

    def caught_up(self) -> bool:
        """Every message published so far has been polled."""
        return self.pipeline.counts.consumed >= self.published

    def wait_for(self, condition: Callable[[], bool], *, timeout_s: float, poll_s: float) -> bool:
        """Until `condition()` holds; False once `timeout_s` passes or the ingest has ended."""
        deadline = self.clock() + timeout_s
        while not condition():
            if self.clock() > deadline or not self.alive:
                return False
            self.sleep(poll_s)
        return True

    def stop(self, *, join_timeout_s: float = JOIN_TIMEOUT_S) -> dict[str, Any]:
        """Stop the pipeline and join its thread; its summary, or what it raised."""
        self.pipeline.stop()
        self._thread.join(timeout=join_timeout_s)
        if self.errors:
            raise self.errors[0]
        return self.result
