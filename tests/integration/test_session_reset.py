"""A venue that restarts its sequence numbers, end to end: `k2 replay` a CSV, `k2 ingest`
commits every 0.2 s, and the raw table is counted with `stored_keys`.

The second session reuses the first one's seqs, ten minutes later on the exchange clock and
a moment later on the wall clock, so inside the dedup horizon: its trades are new rows in a
new session, while copies of either session are dropped (the old session's late copies even
where the new one never got to), also after Redis lost the state and the feed came again."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from k2lib.config import K2Settings
from tests.helpers import last_json, run_k2, stored_keys
from tests.integration.schedules import wipe_redis_state

pytestmark = [pytest.mark.integration]

T0_NS = 1_733_100_000_000_000_000
QUIET_NS = 600_000_000_000  # ten minutes: past the tracker's 60 s reset rule
OLD, NEW = 4_000, 3_000


def write_feed(path: Path, sessions: list[tuple[int, range]]) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["exchange", "symbol", "seq", "ts", "price", "qty", "side"])
        for start_ns, seqs in sessions:
            for seq in seqs:
                ts = start_ns + seq * 1_000_000
                out.writerow(["binance", "BTCUSDT", seq, ts, "60000.5", "0.001", "buy"])


def ingest(env: dict[str, str]) -> dict:
    args = ("ingest", "--until-idle", "1", "--commit-interval", "0.2")
    return last_json(run_k2(*args, env=env).stdout)


def test_a_sequence_reset_stores_the_new_session_and_no_copy(
    k2_settings: K2Settings, k2_env: dict[str, str], tmp_path: Path
) -> None:
    old, new = (T0_NS, range(1, OLD + 1)), (T0_NS + QUIET_NS, range(1, NEW + 1))
    feed = tmp_path / "reset.csv"
    # The first session, the second, then copies: the old session's last 1,500 (seqs the new
    # session reached, and seqs it never did) and the new session's first 100.
    write_feed(feed, [old, new, (T0_NS, range(OLD - 1_499, OLD + 1)), (new[0], range(1, 101))])
    run_k2("replay", str(feed), env=k2_env)
    first = ingest(k2_env)
    keys = stored_keys(k2_settings)
    assert len(keys) == len(set(keys)) == OLD + NEW, first
    sessions = Counter(session for _, _, session, _ in keys)
    assert sessions == {0: OLD, (T0_NS + QUIET_NS) // 1_000 + 1_000: NEW}, sessions
    assert first["sequence"]["reset"] == 1 and first["duplicates"] == 1_600, first
    assert json.loads(run_k2("gaps", "--format", "json", env=k2_env).stdout) == []

    assert wipe_redis_state(k2_settings) > 0  # Redis lost it all; the feed comes again
    run_k2("replay", str(feed), env=k2_env)
    second = ingest(k2_env)
    keys = stored_keys(k2_settings)
    assert len(keys) == len(set(keys)) == OLD + NEW, second
    assert second["written"] == 0 and second["state"]["rebuilds"] == 1, second
    assert json.loads(run_k2("gaps", "--format", "json", env=k2_env).stdout) == []


def test_a_faulty_feed_with_resets_is_stored_exactly_and_its_gaps_are_the_truth(
    k2_settings: K2Settings, k2_env: dict[str, str], tmp_path: Path
) -> None:
    truth_path = tmp_path / "truth.json"
    faults = "reset=0.0008,dup=0.01,gap=0.002,reorder=0.01,poison=0.001"
    feed = ("replay", "synthetic", "--limit", "30000", "--symbols", "3", "--seed", "11")
    run_k2(*feed, "--faults", faults, "--truth", str(truth_path), env=k2_env)
    truth = json.loads(truth_path.read_text())
    assert truth["resets"] >= 2, truth
    first = ingest(k2_env)
    keys = stored_keys(k2_settings)
    assert len(keys) == len(set(keys)) == truth["unique_records"], first
    assert first["sequence"]["reset"] == truth["resets"], first
    assert first["dlq"] == truth["poison"], first
    gaps = json.loads(run_k2("gaps", "--format", "json", env=k2_env).stdout)
    want = [(g["exchange"], g["symbol"], g["first"], g["last"]) for g in truth["gaps"]]
    assert [(g["exchange"], g["symbol"], g["first"], g["last"]) for g in gaps] == want

    assert wipe_redis_state(k2_settings) > 0
    run_k2(*feed, "--faults", faults, env=k2_env)
    second = ingest(k2_env)
    assert second["written"] == 0, second
    assert len(stored_keys(k2_settings)) == truth["unique_records"]
