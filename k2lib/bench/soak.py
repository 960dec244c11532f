"""A soak: ingest at a fixed rate for N minutes; RSS, lag and open files sampled throughout.

    python -m k2lib.bench.soak --minutes 10 --rate 20000

Writes `bench/soak.json` and prints one JSON summary: RSS first/last/max and its slope
over the second half, the largest lag, and open file descriptors at start and end. The
ingest runs in the demo's background-ingest harness (`k2lib.demo.harness`), sampled every
`SAMPLE_EVERY_S` by `k2lib.demo.sampling.Sampler`.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from k2lib.config import K2Settings
from k2lib.connect import create_topics
from k2lib.feeds.synthetic import SyntheticConfig, SyntheticFeed
from k2lib.stack import LocalStack

__all__ = ["run"]

SAMPLE_EVERY_S = 5.0


def run(settings: K2Settings, *, minutes: float = 10.0, rate: float = 20_000.0) -> dict[str, Any]:
    from k2lib.demo.harness import BackgroundIngest
    from k2lib.demo.sampling import Sampler
    from k2lib.ingestion.pipeline import IngestConfig, IngestPipeline
    from k2lib.ingestion.runtime import build_stages
    from k2lib.monitoring import new_registry

    tag = uuid.uuid4().hex[:8]
    s = settings.with_(topic=f"soak.{tag}", dlq_topic=f"soak.{tag}.dlq", table=f"soak.t_{tag}")
    create_topics(s, {s.topic: s.partitions, s.dlq_topic: 1})
    records = int(minutes * 60 * rate)
    registry = new_registry()
    pipeline = IngestPipeline.from_settings(
        s,
        registry=registry,
        stages=build_stages(s, registry),
        config=IngestConfig(commit_interval_s=2.0),
    )
    proc = psutil.Process()

    def sample() -> dict[str, float]:
        return {
            "rss_mb": proc.memory_info().rss / 2**20,
            "lag": float(pipeline.consumer.lag()),
            "fds": float(proc.num_fds()),
        }

    deadline = time.monotonic() + minutes * 60 + 120
    ingest = BackgroundIngest(pipeline, name="k2-soak-ingest").start()
    with Sampler(sample, interval_s=SAMPLE_EVERY_S) as sampler:
        feed = SyntheticFeed(SyntheticConfig(seed=99, records=records, symbols=50))
        published = ingest.publish(feed, s, rate=rate)["published"]
        ingest.wait_for(
            lambda: pipeline.consumer.lag() == 0,
            timeout_s=max(0.0, deadline - time.monotonic()),
            poll_s=SAMPLE_EVERY_S,
        )
    result = ingest.stop()
    samples = sampler.rows
    half = samples[len(samples) // 2 :]
    slope = (
        float(np.polyfit([x["t"] for x in half], [x["rss_mb"] for x in half], 1)[0])
        if len(half) > 2
        else 0.0
    )
    summary = {
        "minutes": minutes,
        "rate_msg_s": rate,
        "records": records,
        "written": result.get("written"),
        "published": published,
        "rss_mb_first": round(samples[0]["rss_mb"], 1),
        "rss_mb_last": round(samples[-1]["rss_mb"], 1),
        "rss_mb_max": round(max(x["rss_mb"] for x in samples), 1),
        "rss_mb_per_min_second_half": round(slope * 60, 3),
        "lag_max": int(max(x["lag"] for x in samples)),
        "fds_first": int(samples[0]["fds"]),
        "fds_last": int(samples[-1]["fds"]),
        "samples": len(samples),
    }
    Path("bench").mkdir(exist_ok=True)
    Path("bench/soak.json").write_text(json.dumps({**summary, "series": samples}, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20_000.0)
    args = parser.parse_args()
    settings = K2Settings.from_env()
    LocalStack(settings).up()
    print(json.dumps(run(settings, minutes=args.minutes, rate=args.rate)))


if __name__ == "__main__":
    main()
