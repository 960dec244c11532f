"""Raw confluent-kafka consume rate against the local broker, per consumer setting.

The evidence behind ADR 009: publishes N synthetic trades to a fresh topic, then reads
them all back with `assign()` + `consume()` once per variant (count only, no decode).

    .venv/bin/python bench/consumer_settings.py --records 1000000 --repeat 2

Needs the stack (`k2 up`); honours the same K2_* settings as the CLI.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from k2lib.config import K2Settings
from k2lib.feeds.publisher import replay
from k2lib.feeds.synthetic import SyntheticConfig, SyntheticFeed
from k2lib.ingestion.consumer import CONSUMER_DEFAULTS
from k2lib.connect import create_topics

VARIANTS: list[tuple[str, int, dict[str, Any]]] = [
    ("partition EOF on, 100k polls", 100_000, {"enable.partition.eof": True}),
    ("partition EOF off, 100k polls", 100_000, {"enable.partition.eof": False}),
    ("partition EOF on, 20k polls", 20_000, {"enable.partition.eof": True}),
    ("partition EOF off, 20k polls (K2)", 20_000, {"enable.partition.eof": False}),
]


def consume_rate(settings: K2Settings, poll: int, overrides: dict[str, Any], n: int) -> float:
    config = {**CONSUMER_DEFAULTS, "statistics.interval.ms": 0, **overrides}
    consumer = Consumer(settings.kafka_config(**config, **{"group.id": uuid.uuid4().hex}))
    consumer.assign([TopicPartition(settings.topic, p, 0) for p in range(settings.partitions)])
    started = time.perf_counter()
    got = 0
    while got < n and time.perf_counter() - started < 120:
        got += sum(1 for m in consumer.consume(poll, timeout=1.0) if m.error() is None)
    rate = got / (time.perf_counter() - started)
    consumer.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    settings = K2Settings.from_env()
    settings = settings.with_(topic=f"bench.consumer.{tag}", dlq_topic=f"bench.consumer.{tag}.dlq")
    create_topics(settings, {settings.topic: settings.partitions})
    feed = SyntheticFeed(SyntheticConfig(seed=5, records=args.records))
    replay(feed, settings)
    results: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    for _ in range(args.repeat):
        for name, poll, overrides in VARIANTS:
            results[name].append(round(consume_rate(settings, poll, overrides, args.records)))
    print(json.dumps({"records": args.records, "msg_s": results}, indent=1))


if __name__ == "__main__":
    main()
