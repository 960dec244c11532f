"""Exactly once, counted on the raw table, under seeded adversarial schedules.

Every schedule (see schedules.py) prints its seed; replay one with
`K2_SCHEDULE_SEEDS=1234 pytest tests/integration/test_exactly_once.py`. The CI run draws
`K2_SCHEDULES` seeds (default 30) from `K2_SCHEDULE_BASE`; set K2_SCHEDULES=300 for more.
`K2_SCHEDULE_JOBS` schedules (default 3) run at once, each on its own topic and table: the
processes mostly wait on the feed, the group and the commit interval, not on the cores. A
Redis freeze of one schedule then reaches the others too, as it would in production. A
schedule that restarts the broker runs on a memory broker of its own (a restart of the
shared one would wipe every other schedule's topics); on an external broker, which K2 does
not restart, its restart is left out.

Checked after every schedule, never through the hybrid engine (whose dedup would hide a
stored duplicate):

- the table: rows == distinct (exchange, symbol, seq) == the feed's unique valid trades;
- `k2 gaps` == the gaps the feed really has;
- the DLQ holds every poison message of every send, each with its reason.
"""

from __future__ import annotations

import json
import os
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from k2lib.config import K2Settings
from k2lib.connect import redis_client
from k2lib.ingestion.sequence.gaps import list_gaps
from tests.helpers import MemoryBroker, last_json, run_k2, stored_keys
from tests.integration.conftest import feed_env, fresh_feed
from tests.integration.schedules import (
    Schedule,
    duplicated,
    execute,
    truth_gaps,
    truth_of,
    wipe_redis_state,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = int(os.environ.get("K2_SCHEDULE_BASE", "20261202"))
COUNT = int(os.environ.get("K2_SCHEDULES", "30"))
SEEDS = (
    [int(s) for s in os.environ["K2_SCHEDULE_SEEDS"].split(",")]
    if os.environ.get("K2_SCHEDULE_SEEDS")
    else [BASE + i for i in range(COUNT)]
)
JOBS = max(1, int(os.environ.get("K2_SCHEDULE_JOBS", "3")))


def dlq_sources(settings: K2Settings) -> dict[str, str]:
    """`source -> reason` of every DLQ message (bounded read to the end of the topic)."""
    consumer = Consumer(
        settings.kafka_config(
            **{
                "group.id": "k2-test-dlq",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
    )
    consumer.assign([TopicPartition(settings.dlq_topic, 0, 0)])
    out: dict[str, str] = {}
    empty = 0
    try:
        for _ in range(200):  # bounded: a few seconds past the last message
            msgs = consumer.consume(num_messages=10_000, timeout=0.5)
            if not msgs:
                empty += 1
                if empty >= 4:
                    break
                continue
            empty = 0
            for m in msgs:
                if m.error() is None:
                    headers = dict(m.headers() or [])
                    out[headers["k2.source"].decode()] = headers["k2.reason"].decode()
    finally:
        consumer.close()
    return out


def check(
    schedule: Schedule,
    settings: K2Settings,
    env: dict[str, str],
    workdir: Path,
    broker: MemoryBroker | None = None,
) -> None:
    run = execute(schedule, settings, env, workdir, broker)
    where = f"{schedule.describe()}\nevents: {run.log[:-1]}\nsettle: {run.log[-1][:1500]}"
    truth = truth_of(workdir)
    keys = stored_keys(settings)
    assert len(keys) == len(set(keys)), f"stored duplicates {duplicated(keys)}\n{where}"
    assert len(keys) == truth["unique_records"], (
        f"{len(keys)} rows for {truth['unique_records']} unique trades\n{where}"
    )
    found = {
        (g["exchange"], g["symbol"], g["first"], g["last"])
        for g in list_gaps(redis_client(settings), settings.sequence_prefix)
    }
    assert found == truth_gaps(truth), (
        f"gaps: missing {sorted(truth_gaps(truth) - found)[:5]}, "
        f"extra {sorted(found - truth_gaps(truth))[:5]}\n{where}"
    )
    dlq = dlq_sources(settings)
    assert len(dlq) == truth["poison"] * run.sends, (
        f"{len(dlq)} DLQ sources for {truth['poison']} poison x {run.sends} sends\n{where}"
    )
    assert all(dlq.values()), f"a DLQ message without a reason\n{where}"


@pytest.fixture(scope="module")
def schedule_failures(
    stack_settings: K2Settings, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, str]:
    """Every seed's schedule, `JOBS` at a time: `seed -> failure` for those that failed."""
    # Made here, not in the pool: pytest's first mktemp makes its base directory, racily.
    root = tmp_path_factory.mktemp("schedules")

    def one(seed: int) -> tuple[int, str | None]:
        schedule = Schedule.draw(seed)
        if stack_settings.kafka_external:
            schedule = schedule.without("broker")
        workdir = root / f"schedule-{seed}"
        workdir.mkdir()
        try:
            if schedule.restarts_broker:
                with MemoryBroker(stack_settings, workdir / "broker") as broker:
                    settings = fresh_feed(broker.settings)
                    check(schedule, settings, feed_env(settings), workdir, broker)
            else:
                settings = fresh_feed(stack_settings)
                check(schedule, settings, feed_env(settings), workdir)
        except Exception:  # reported by the seed's own test
            return seed, traceback.format_exc()
        return seed, None

    with ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="schedule") as pool:
        return {seed: err for seed, err in pool.map(one, SEEDS) if err is not None}


@pytest.mark.parametrize("seed", SEEDS)
def test_schedule_stores_every_trade_once(seed: int, schedule_failures: dict[int, str]) -> None:
    print(f"schedule seed {seed}: replay with K2_SCHEDULE_SEEDS={seed} K2_SCHEDULE_JOBS=1")
    if seed in schedule_failures:
        pytest.fail(
            f"schedule seed {seed} (run {JOBS} at a time; replay alone with "
            f"K2_SCHEDULE_SEEDS={seed} K2_SCHEDULE_JOBS=1):\n{schedule_failures[seed]}",
            pytrace=False,
        )


@pytest.mark.parametrize("group", [True, False], ids=["group", "alone"])
def test_two_ingests_at_once_store_every_row_once(
    group: bool, k2_settings: K2Settings, k2_env: dict[str, str], tmp_path: Path
) -> None:
    """As one consumer group they split the partitions; alone, each reads them all and the
    compare-and-set commit fences the one that comes second."""
    schedule = Schedule(
        seed=11,
        messages=20_000,
        faults="dup=0.01,gap=0.001,poison=0.001",
        rate=10_000,
        writers=2,
        commit_interval=0.3,
        events=(),
        group=group,
    )
    check(schedule, k2_settings, k2_env, tmp_path)


def test_three_workers_one_killed_one_late_one_zombie(
    k2_settings: K2Settings, k2_env: dict[str, str], tmp_path: Path
) -> None:
    """Three group members while a faulty feed arrives: one SIGKILLed (and restarted),
    one joining late, one frozen past its session timeout and then resumed."""
    schedule = Schedule(
        seed=12,
        messages=30_000,
        faults="dup=0.01,gap=0.001,reorder=0.005,poison=0.001",
        rate=5_000,
        writers=3,
        commit_interval=0.2,
        events=((1.0, "zombie"), (1.5, "kill"), (2.0, "join")),
    )
    check(schedule, k2_settings, k2_env, tmp_path)


def test_broker_restarted_mid_ingest_then_feed_resent_stores_every_row_once(
    own_broker: MemoryBroker, own_feed: K2Settings, own_env: dict[str, str], tmp_path: Path
) -> None:
    """Two group members commit every 0.2 s while the broker restarts (in memory: every
    topic is gone) and the feed is sent again: nothing lost, nothing stored twice."""
    schedule = Schedule(
        seed=13,
        messages=20_000,
        faults="dup=0.01,gap=0.001,poison=0.001",
        rate=8_000,
        writers=2,
        commit_interval=0.2,
        events=((1.5, "broker"),),
    )
    check(schedule, own_feed, own_env, tmp_path, own_broker)


def test_redis_wiped_then_feed_resent_stores_nothing_twice(
    k2_settings: K2Settings, k2_env: dict[str, str], tmp_path: Path
) -> None:
    truth = tmp_path / "truth.json"
    feed = [
        "replay",
        "synthetic",
        "--limit",
        "20000",
        "--seed",
        "5",
        "--faults",
        "dup=0.01,gap=0.001,poison=0.001",
    ]
    run_k2(*feed, "--truth", str(truth), env=k2_env)
    first = last_json(
        run_k2("ingest", "--until-idle", "1", "--commit-interval", "0.3", env=k2_env).stdout
    )
    assert wipe_redis_state(k2_settings) > 0
    run_k2(*feed, env=k2_env)
    second = last_json(run_k2("ingest", "--until-idle", "1", env=k2_env).stdout)
    keys = stored_keys(k2_settings)
    expected = json.loads(truth.read_text())
    assert len(keys) == len(set(keys)) == expected["unique_records"], (first, second)
    assert second["written"] == 0 and second["state"]["rebuilds"] == 1, second
    gaps = json.loads(run_k2("gaps", "--format", "json", env=k2_env).stdout)
    assert {(g["exchange"], g["symbol"], g["first"], g["last"]) for g in gaps} == truth_gaps(
        expected
    )
