"""Foundation, end to end against the live stack: replay -> Kafka -> ingest -> Iceberg."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from confluent_kafka import Consumer, TopicPartition

from k2lib.config import K2Settings
from k2lib.connect import load_k2_catalog
from k2lib.feeds import open_source
from tests.helpers import (
    after_kills,
    ingest_until_killed,
    last_json,
    replay_with_truth,
    run_k2,
    stored_keys,
)

pytestmark = [pytest.mark.integration]


def read_table(settings: K2Settings):
    return load_k2_catalog(settings).load_table(settings.table).scan().to_arrow()


def keys_of(settings: K2Settings) -> Counter:
    """How often each `(exchange, symbol, seq)` is stored."""
    return Counter((exchange, symbol, seq) for exchange, symbol, _, seq in stored_keys(settings))


def test_poison_goes_to_dlq_with_reason_and_valid_rows_are_all_stored(
    k2_settings, k2_env, tmp_path: Path
):
    feed = ("synthetic", "--limit", "20000", "--faults", "poison=0.02", "--seed", "5")
    rep, truth = replay_with_truth(tmp_path, *feed, env=k2_env)
    assert truth["poison"] > 100
    assert rep["published"] == 20000 + truth["poison"]
    summary = last_json(run_k2("ingest", "--until-idle", "2", "--plain", env=k2_env).stdout)
    assert summary["dlq"] == truth["poison"]
    assert summary["written"] == 20000
    table = read_table(k2_settings)
    assert table.num_rows == 20000
    assert max(keys_of(k2_settings).values()) == 1

    consumer = Consumer(k2_settings.kafka_config(**{"group.id": "t", "enable.partition.eof": True}))
    consumer.assign([TopicPartition(k2_settings.dlq_topic, 0, 0)])
    reasons: list[str] = []
    deadline = time.monotonic() + 20
    while len(reasons) < truth["poison"] and time.monotonic() < deadline:
        for m in consumer.consume(1000, timeout=1.0):
            if m.error() is None:
                headers = dict(m.headers())
                reasons.append(headers["k2.reason"].decode())
                assert headers["k2.source"].startswith(k2_settings.topic.encode())
    consumer.close()
    assert len(reasons) == truth["poison"]
    assert all(r for r in reasons)


def test_real_binance_captures_are_stored_exactly(k2_settings, k2_env, binance_dir: Path):
    expected: Counter = Counter()
    expected_keys: set = set()
    for batch in open_source(str(binance_dir)).batches():
        for t in batch.trades():
            expected[(t.exchange, t.symbol)] += 1
            expected_keys.add(t.key)
    assert expected == {
        ("binance", "BTCUSDT"): 9757 + 10147,
        ("binance", "ETHUSDT"): 6106,
        ("binance-usdm", "BTCUSDT"): 21313,
    }
    rep = last_json(run_k2("replay", str(binance_dir), env=k2_env).stdout)
    assert rep["records"] == sum(expected.values())
    last_json(run_k2("ingest", "--until-idle", "2", "--plain", env=k2_env).stdout)
    table = read_table(k2_settings)
    stored = keys_of(k2_settings)
    assert set(stored) == expected_keys
    assert max(stored.values()) == 1
    per_venue = Counter(
        zip(table.column("exchange").to_pylist(), table.column("symbol").to_pylist(), strict=True)
    )
    assert per_venue == expected
    # exact decimals: the first spot trade's price is the capture's string
    first = table.filter(pc.equal(table.column("seq"), 3735683259))
    assert str(first.column("price")[0].as_py()) == "61837.63000000"


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing_and_duplicates_nothing(k2_settings, k2_env):
    records = 200_000
    rep = last_json(
        run_k2("replay", "synthetic", "--limit", str(records), "--seed", "11", env=k2_env).stdout
    )
    assert rep["records"] == records
    rng = random.Random(42)
    kills = 0
    ingest = ["--until-idle", "3", "--plain", "--commit-rows", "15000", "--commit-interval", "0.2"]
    for _ in range(6):
        if ingest_until_killed(ingest, k2_env, rng, (1.5, 4.0)):
            kills += 1
    assert kills >= 3
    final = run_k2(
        "ingest", "--until-idle", "3", "--plain", "-v", *after_kills(k2_settings), env=k2_env
    )
    last_json(final.stdout)
    table = read_table(k2_settings)
    counts = keys_of(k2_settings)
    assert table.num_rows == records, final.stdout[-2000:] + final.stderr[-6000:]
    assert len(counts) == records
    assert max(counts.values()) == 1
    assert np.all(table.column("kafka_offset").to_numpy() >= 0)
