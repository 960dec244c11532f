"""Seeded adversarial schedules for the exactly-once suite, run against the live stack.

A schedule is drawn from its seed alone: a faulty synthetic feed published at a paced rate
while 1-3 real `k2 ingest` processes commit every 0.1-0.3 s, and events at random moments:
SIGKILL of an ingest (restarted after a pause), the Redis state of this feed wiped (what a
FLUSHALL or failover does to it), Redis frozen with SIGSTOP, the whole feed sent again, and
in about one schedule of four the broker restarted (its log in memory: every topic gone, the
feed sent again). Half the feeds also restart a busy symbol's numbering now and then (a
new sequence session, seqs from 1 again). A schedule that restarts the broker runs on a
broker of its own (tests/helpers.py MemoryBroker, on a free loopback port), so that the
schedules running at the same time, and everyone else on the stack, keep theirs.
After the last event one more ingest settles what is left; then the raw table, `k2 gaps` and
the DLQ are checked against the feed's ground truth.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from k2lib.config import K2Settings
from k2lib.connect import redis_client
from k2lib.feeds import FaultSpec, open_source
from k2lib.feeds.publisher import replay
from tests.helpers import MemoryBroker

# Drawn at random, three a schedule; "join" and "zombie" on request; "broker" (a restart)
# is drawn on its own, with BROKER_RESTART_P (Schedule.with_broker_restart).
EVENTS = ("kill", "wipe", "freeze", "resend")
BROKER_RESTART_P = 0.25
RESETS_P = 0.5
RESET_RATE = 0.002  # per record, once a symbol has RESET_AFTER records in its session
ZOMBIE_FREEZE_S = 8.0  # past the consumer's session.timeout.ms (6 s)
# How `k2 ingest` ends (exit code 2) when its topic is gone, as it is after a restart of the
# memory broker until the topics are created again (k2lib.ingestion.consumer).
TOPIC_GONE = "is gone from the broker"


@dataclass(frozen=True)
class Schedule:
    seed: int
    messages: int
    faults: str
    rate: int
    writers: int
    commit_interval: float
    events: tuple[tuple[float, str], ...]
    group: bool = True
    """Writers share the partitions as a consumer group (the default), or each reads them
    all with `--alone` and the compare-and-set commit fences the others."""
    ending: str = "drain"
    """How the writers end once the feed is sent: "drain" (each runs until idle) or "stop"
    (SIGTERM at a random moment: each makes its last commit and leaves the rest)."""

    @classmethod
    def draw(cls, seed: int) -> Schedule:
        rng = random.Random(seed)
        faults = (
            f"dup={rng.choice([0.005, 0.01, 0.03])},gap={rng.choice([0.0005, 0.002])},"
            f"reorder={rng.choice([0.0, 0.005])},poison={rng.choice([0.0005, 0.002])}"
        )
        events = tuple(
            sorted((round(rng.uniform(0.3, 3.0), 2), rng.choice(EVENTS)) for _ in range(3))
        )
        return (
            cls(
                seed=seed,
                messages=rng.choice([6_000, 10_000, 15_000]),
                faults=faults,
                rate=rng.choice([4_000, 8_000]),
                writers=rng.choice([1, 2, 3]),
                commit_interval=rng.choice([0.1, 0.2, 0.3]),
                events=events,
                group=rng.random() < 0.6,
                ending="stop" if rng.random() < 0.7 else "drain",
            )
            .with_broker_restart(rng)
            .with_resets(rng)
        )

    def with_broker_restart(self, rng: random.Random) -> Schedule:
        """Drawn last, so that every other draw of a seed is what it was before."""
        if rng.random() >= BROKER_RESTART_P:
            return self
        at = round(rng.uniform(0.3, 3.0), 2)
        return replace(self, events=tuple(sorted((*self.events, (at, "broker")))))

    def with_resets(self, rng: random.Random) -> Schedule:
        """Half the feeds restart a busy symbol's numbering now and then (a new session,
        seqs from 1 again: `FaultSpec.reset`). Drawn after the broker, for the same reason."""
        if rng.random() >= RESETS_P:
            return self
        return replace(self, faults=f"{self.faults},reset={RESET_RATE}")

    def without(self, name: str) -> Schedule:
        return replace(self, events=tuple(e for e in self.events if e[1] != name))

    @property
    def restarts_broker(self) -> bool:
        return any(name == "broker" for _, name in self.events)

    def describe(self) -> str:
        return (
            f"seed={self.seed} messages={self.messages} faults={self.faults} rate={self.rate} "
            f"writers={self.writers} group={self.group} commit_interval={self.commit_interval} "
            f"events={list(self.events)} ending={self.ending}"
        )


@dataclass
class Run:
    schedule: Schedule
    settings: K2Settings
    env: dict[str, str]
    workdir: Path
    redis_pid: int | None
    broker: MemoryBroker | None
    """The schedule's own broker, which a "broker" event restarts."""
    log: list[str] = field(default_factory=list)
    ingests: list[subprocess.Popen[str]] = field(default_factory=list)
    killed: int = 0
    sends: int = 1
    """Sends of the feed the DLQ topic still holds (a broker wipe takes the earlier ones)."""
    feeds: list[threading.Thread] = field(default_factory=list)
    """Every send's publishing thread."""
    stderr: dict[subprocess.Popen[str], str] = field(default_factory=dict)
    """What each ingest that ended wrote to stderr, once read."""
    replaced: set[subprocess.Popen[str]] = field(default_factory=set)

    def k2(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "k2lib.cli.main", *args],
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def replay(self, truth: Path | None) -> threading.Thread:
        """The schedule's feed, published from a thread of this process (paced)."""
        s = self.schedule
        feed = open_source("synthetic", limit=s.messages, exchange=None, seed=s.seed, symbols=None)

        def publish() -> None:
            replay(
                feed,
                self.settings,
                rate=s.rate,
                faults=FaultSpec.parse(s.faults),
                seed=s.seed,
                truth_path=truth,
            )

        thread = threading.Thread(target=publish, name=f"feed-{s.seed}", daemon=True)
        thread.start()
        self.feeds.append(thread)
        return thread

    def ingest(self, idle_s: float = 2.0) -> subprocess.Popen[str]:
        interval = str(self.schedule.commit_interval)
        args = ["ingest", "--until-idle", str(idle_s), "--commit-interval", interval]
        proc = self.k2(*args, *([] if self.schedule.group else ["--alone"]))
        self.ingests.append(proc)
        return proc

    def stderr_of(self, proc: subprocess.Popen[str]) -> str:
        """An ended process's stderr."""
        if proc not in self.stderr:
            self.stderr[proc] = proc.stderr.read() if proc.stderr else ""
        return self.stderr[proc]

    def lost_topic(self, proc: subprocess.Popen[str]) -> bool:
        """The ingest ended because a broker restart took its topic (it fails fast)."""
        return (
            self.schedule.restarts_broker
            and proc.poll() == 2
            and TOPIC_GONE in self.stderr_of(proc)
        )

    def replace_lost(self) -> None:
        """Start another ingest for each that lost its topic, as its supervisor would."""
        for proc in [p for p in self.ingests if p not in self.replaced and self.lost_topic(p)]:
            self.replaced.add(proc)
            self.log.append(f"{time.monotonic():.2f} an ingest lost its topic: started again")
            self.ingest()

    def event(self, name: str, rng: random.Random) -> None:
        self.log.append(f"{time.monotonic():.2f} {name}")
        if name == "kill":
            alive = [p for p in self.ingests if p.poll() is None]
            if alive:
                victim = rng.choice(alive)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                self.killed += 1
                time.sleep(rng.uniform(0.1, 0.6))
                self.ingest()
        elif name == "wipe":
            wipe_redis_state(self.settings)
        elif name == "freeze" and self.redis_pid:
            os.kill(self.redis_pid, signal.SIGSTOP)
            try:
                time.sleep(rng.uniform(0.5, 2.0))
            finally:
                os.kill(self.redis_pid, signal.SIGCONT)
        elif name == "join":
            self.ingest()
        elif name == "zombie":
            # A member frozen past its session timeout: the group moves its partitions on;
            # when it wakes, its late commit must be fenced, not appended.
            alive = [p for p in self.ingests if p.poll() is None]
            if alive:
                victim = rng.choice(alive)
                victim.send_signal(signal.SIGSTOP)
                try:
                    time.sleep(ZOMBIE_FREEZE_S)
                finally:
                    victim.send_signal(signal.SIGCONT)
        elif name == "resend":
            self.sends += 1
            self.replay(None).join(timeout=120)
        elif name == "broker":
            # The restart waits for the send in flight: cut off midway, its tail would reach
            # the new broker before the feed sent again and shift that send's offsets, so
            # the DLQ (its sources are offsets) could not be counted. Then, as a producer
            # that lost its broker does, the whole feed is sent again into the empty topics
            # (the log is in memory: every topic is gone).
            if self.broker is None:
                raise AssertionError("a broker restart needs the schedule's own MemoryBroker")
            for thread in self.feeds:
                thread.join(timeout=180)
            self.broker.restart(self.settings)
            self.sends = 1
            self.replay(None).join(timeout=120)
            self.replace_lost()


def wipe_redis_state(settings: K2Settings) -> int:
    """Delete every Redis key of this feed and table, as a FLUSHALL would (scoped, so that
    other tests sharing the stack keep theirs). On a cluster, on every primary."""
    client = redis_client(settings)
    try:
        keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1_000))
        for key in keys:  # one at a time: the keys of two prefixes sit in two slots
            client.delete(key)
        return len(keys)
    finally:
        client.close()


def execute(
    schedule: Schedule,
    settings: K2Settings,
    env: dict[str, str],
    workdir: Path,
    broker: MemoryBroker | None = None,
) -> Run:
    """Run `schedule` to the end (every process exited, one settling ingest after); a
    schedule that restarts the broker needs `broker`, the one `settings` point at."""
    rng = random.Random(schedule.seed * 7919)
    run = Run(schedule, settings, env, workdir, _redis_pid(settings.home), broker)
    for _ in range(schedule.writers):
        run.ingest()
    truth = workdir / "truth.json"
    feed = run.replay(truth)
    started = time.monotonic()
    for at, name in schedule.events:
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        run.event(name, rng)
    feed.join(timeout=180)
    if schedule.ending == "stop":
        time.sleep(rng.uniform(0.0, 1.0))
        run.log.append(f"{time.monotonic():.2f} stop")
        for proc in run.ingests:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
    for proc in run.ingests:
        if proc.poll() is None:
            try:
                proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(
                    f"{schedule.describe()}: an ingest still ran 180 s after the feed, "
                    f"events {run.log}:\n{run.stderr_of(proc)[-3000:]}"
                ) from None
    # SIGTERM before the handler is installed (still importing) ends a process at once.
    failed = [
        p
        for p in run.ingests
        if p.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM) and not run.lost_topic(p)
    ]
    errors = [run.stderr_of(p) for p in failed]
    settle = run.k2("ingest", "--until-idle", "1", "--alone")
    out, err = settle.communicate(timeout=180)
    if settle.returncode != 0 or failed:
        raise AssertionError(
            f"{schedule.describe()}: an ingest failed:\n{err[-3000:]}\n"
            + "\n".join(e[-3000:] for e in errors)
        )
    run.log.append(out.strip().splitlines()[-1] if out.strip() else "")
    return run


def truth_of(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / "truth.json").read_text())


def truth_gaps(truth: dict[str, Any]) -> set[tuple[str, str, int, int]]:
    return {(g["exchange"], g["symbol"], int(g["first"]), int(g["last"])) for g in truth["gaps"]}


def duplicated(keys: list[tuple[str, str, int]]) -> list[tuple[tuple[str, str, int], int]]:
    return [(k, n) for k, n in Counter(keys).items() if n > 1][:10]


@cache
def _redis_pid(home: Path) -> int | None:
    proc = subprocess.run(
        [sys.executable, "-m", "k2lib.cli.main", "status", "--format", "json"],
        env={**os.environ, "K2_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        info = json.loads(proc.stdout)["redis"]
    except (ValueError, KeyError):
        return None
    return int(info["pid"]) if info.get("managed") and info.get("pid") else None
