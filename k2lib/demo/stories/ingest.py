"""Notebook 01: replay a feed into Kafka while the full pipeline ingests it, then check every
count K2 found against the ground truth the fault injector wrote.

`run_ingestion_demo` publishes a seeded synthetic feed with faults at a fixed rate while
`IngestPipeline` (with `build_stages`: dedup, sequence tracking, degradation) consumes it in
a background thread (`harness.BackgroundIngest`). It stops once every published message is
consumed, reads the DLQ and the table back, and returns an `IngestionRun`.
`run_capture_demo` does the same with the real Binance captures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from k2lib.demo.context import DemoContext
from k2lib.demo.harness import BackgroundIngest
from k2lib.demo.readback import list_open_gaps, read_dlq, table_key_check
from k2lib.demo.sampling import Sampler
from k2lib.demo.workspace import Workspace, reset_workspace
from k2lib.errors import K2Error
from k2lib.feeds import FaultSpec, FeedSource, open_source
from k2lib.ingestion.pipeline import IngestConfig, IngestPipeline
from k2lib.ingestion.runtime import build_stages
from k2lib.ingestion.stages import Stages
from k2lib.monitoring import new_registry

__all__ = [
    "DEFAULT_FAULTS",
    "IngestionRun",
    "capture_lines",
    "list_open_gaps",
    "read_dlq",
    "run_capture_demo",
    "run_ingestion_demo",
    "table_key_check",
]

DEFAULT_FAULTS = "dup=0.01,gap=0.001,reorder=0.01,poison=0.001"
CONSUME_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class IngestionRun:
    """One replay + ingest, with what was injected and what K2 found."""

    label: str
    replay: dict[str, Any]
    summary: dict[str, Any]
    truth: dict[str, Any]
    dlq_reasons: dict[str, int]
    table: dict[str, int]
    by_key: dict[str, int]
    samples: pd.DataFrame
    open_gaps: list[dict[str, Any]]

    def checks(self) -> dict[str, tuple[int, int]]:
        """name -> (found by K2, injected): the comparison the notebook prints."""
        return {
            "duplicates dropped": (
                _int(self.summary.get("duplicates")),
                self.truth["duplicates_total"],
            ),
            "gaps open": (len(self.open_gaps), self.truth["gap_count"]),
            "poison to DLQ": (sum(self.dlq_reasons.values()), self.truth["poison"]),
            "rows stored": (self.table["unique_keys"], self.truth["unique_records"]),
        }

    @property
    def exactly_once(self) -> bool:
        return (
            self.table["duplicate_rows"] == 0 and self.table["rows"] == self.truth["unique_records"]
        )

    def truth_line(self) -> str:
        t = self.truth
        return (
            f"injected: {t['messages']:,} messages = {t['unique_records']:,} unique records"
            f" + {t['duplicates_total']:,} duplicates + {t['poison']:,} poison;"
            f" {t['gap_records']:,} records dropped in {t['gap_count']:,} gaps;"
            f" {t['reordered']:,} reordered"
        )

    def found_lines(self) -> list[str]:
        lines = []
        for name, (found, injected) in self.checks().items():
            mark = "ok" if found == injected else "MISMATCH"
            lines.append(f"{name:20s} found {found:>7,}  injected {injected:>7,}  {mark}")
        return lines

    @property
    def gaps_match(self) -> bool:
        """The open gaps K2 lists (`k2 gaps`) are exactly the injected ranges."""

        def key(g: dict[str, Any]) -> tuple[str, str, int, int]:
            return (g["exchange"], g["symbol"], int(g["first"]), int(g["last"]))

        return sorted(map(key, self.open_gaps)) == sorted(map(key, self.truth["gaps"]))

    def gaps_line(self) -> str:
        same = "yes" if self.gaps_match else "NO"
        return (
            f"open gaps listed by the sequence tracker: {len(self.open_gaps):,}; "
            f"the same ranges as injected: {same}"
        )

    def exactly_once_line(self) -> str:
        t = self.table
        verdict = "exactly once: yes" if self.exactly_once else "exactly once: NO"
        return (
            f"table: {t['rows']:,} rows, {t['unique_keys']:,} distinct keys,"
            f" {t['duplicate_rows']:,} stored twice -> {verdict}"
        )

    def dlq_lines(self) -> list[str]:
        """What the DLQ topic holds, read back from Kafka, by the reason in its header."""
        return [f"{n:>5,}  {reason}" for reason, n in self.dlq_reasons.items()]

    def rate_line(self) -> str:
        """Timings: different on every run (the notebook marks this output as variable)."""
        s = self.summary
        return (
            f"published at {self.replay['rate_msg_s']:,.0f} msg/s; ingest consumed"
            f" {s['consumed']:,} in {s['elapsed_s']:.2f}s ({s['rate_msg_s']:,.0f} msg/s),"
            f" {s['commits']} commits"
        )


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _ingest_while_replaying(
    ws: Workspace,
    feed: FeedSource,
    *,
    rate: float | None,
    faults: FaultSpec,
    seed: int,
    truth_path: Path,
    full_stages: bool = True,
) -> tuple[dict, dict, pd.DataFrame]:
    registry = new_registry()
    stages = build_stages(ws.settings, registry) if full_stages else Stages()
    pipeline = IngestPipeline.from_settings(
        ws.settings, config=IngestConfig(commit_interval_s=1.0), registry=registry, stages=stages
    )
    ingest = BackgroundIngest(pipeline, name="k2-demo-ingest")

    def sample() -> dict[str, float]:
        return {
            "published": ingest.published,
            "consumed": pipeline.counts.consumed,
            "written": pipeline.counts.written,
        }

    sampler = Sampler(sample).start()
    ingest.start()
    summary = ingest.publish(
        feed, ws.settings, rate=rate, faults=faults, seed=seed, truth_path=truth_path
    )
    caught_up = ingest.wait_for(ingest.caught_up, timeout_s=CONSUME_TIMEOUT_S, poll_s=0.05)
    if not caught_up and ingest.alive:
        pipeline.stop()
        raise K2Error(
            f"ingest consumed {pipeline.counts.consumed:,} of "
            f"{summary['published']:,} messages in {CONSUME_TIMEOUT_S:g}s"
        )
    try:
        result = ingest.stop()  # what the pipeline raised, surfaced in the notebook
    finally:
        samples = sampler.stop()
    return summary, result, samples


def run_ingestion_demo(
    ctx: DemoContext,
    *,
    records: int = 30_000,
    rate: float = 15_000,
    faults: str = DEFAULT_FAULTS,
    seed: int = 11,
) -> IngestionRun:
    """Synthetic feed with injected faults -> Kafka -> full pipeline -> Iceberg, checked."""
    feed = open_source("synthetic", limit=records, seed=seed)
    return _checked_run(
        ctx, "ingest", "synthetic", feed, rate=rate, faults=FaultSpec.parse(faults), seed=seed
    )


def _checked_run(
    ctx: DemoContext,
    section: str,
    label: str,
    feed: FeedSource,
    *,
    rate: float | None,
    faults: FaultSpec,
    seed: int,
) -> IngestionRun:
    """Replay `feed` into a fresh workspace while ingesting it, then read everything back:
    the fault truth, the DLQ, the table's keys and the open gaps."""
    ws = reset_workspace(ctx.settings, section)
    truth_path = ctx.settings.home / "demo" / f"{section}-truth.json"
    replayed, ingested, samples = _ingest_while_replaying(
        ws, feed, rate=rate, faults=faults, seed=seed, truth_path=truth_path
    )
    truth = json.loads(truth_path.read_text())
    dlq = read_dlq(ws.settings, expected=truth["poison"])
    table, by_key = table_key_check(ws)
    return IngestionRun(
        label,
        replayed,
        ingested,
        truth,
        dlq,
        table,
        by_key,
        samples,
        list_open_gaps(ws.settings),
    )


def capture_lines(ctx: DemoContext, run: IngestionRun | None) -> list[str]:
    """What the capture replay stored, per venue and symbol (or why there was none)."""
    if run is None:
        return [ctx.captures_line()]
    lines = [ctx.captures_line(), run.truth_line()]
    lines += [f"{n:>8,} rows  {key}" for key, n in run.by_key.items()]
    return [*lines, *run.found_lines(), run.gaps_line(), run.exactly_once_line()]


def run_capture_demo(ctx: DemoContext) -> IngestionRun | None:
    """The real Binance captures, replayed as recorded (no faults), through the same path."""
    if ctx.captures is None:
        return None
    feed = open_source(str(ctx.captures))
    run = _checked_run(ctx, "capture", "binance", feed, rate=None, faults=FaultSpec(), seed=0)
    if not run.exactly_once:  # the notebook's output here is not compared: fail loudly
        raise K2Error(f"captures not stored exactly once: {run.exactly_once_line()}")
    return run
