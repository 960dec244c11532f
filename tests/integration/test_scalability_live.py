"""Gaps and duplicates found exactly, through the real pipeline, on real and synthetic feeds."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import (
    after_kills,
    ingest_until_killed,
    last_json,
    replay_with_truth,
    run_k2,
    stored_keys,
)

pytestmark = [pytest.mark.integration, pytest.mark.scalability, pytest.mark.phase2]


def test_real_captures_with_injected_faults_gaps_and_dups_equal_truth(
    k2_settings, k2_env, binance_dir: Path, tmp_path: Path
):
    faults = "dup=0.01,gap=0.002,reorder=0.01"
    _, truth = replay_with_truth(
        tmp_path, str(binance_dir), "--faults", faults, "--seed", "17", env=k2_env
    )
    out = last_json(run_k2("ingest", "--until-idle", "2", env=k2_env).stdout)
    assert out["duplicates"] == truth["duplicates_total"] > 0
    assert out["gaps"] == truth["gap_count"] > 0
    gaps = json.loads(run_k2("gaps", "--format", "json", env=k2_env).stdout)
    assert gaps == truth["gaps"]
    per_key = Counter((g["exchange"], g["symbol"]) for g in gaps)
    assert set(per_key) <= {
        ("binance", "BTCUSDT"),
        ("binance", "ETHUSDT"),
        ("binance-usdm", "BTCUSDT"),
    }
    keys = Counter(stored_keys(k2_settings))
    assert len(keys) == truth["unique_records"] and max(keys.values()) == 1


@pytest.mark.slow
def test_sigkill_twenty_times_with_faults_is_exactly_once_and_gaps_equal_truth(
    k2_settings, k2_env, tmp_path: Path
):
    faults = "dup=0.01,gap=0.001,reorder=0.005,poison=0.001"
    feed = ("synthetic", "--limit", "200000", "--faults", faults, "--seed", "23")
    _, truth = replay_with_truth(tmp_path, *feed, env=k2_env)
    rng = random.Random(7)
    ingest = ["--until-idle", "2", "--commit-rows", "5000", "--commit-interval", "0.2"]
    kills = 0
    while kills < 20:
        if not ingest_until_killed(ingest, k2_env, rng, (1.2, 3.0)):
            break  # it finished everything before the kill: nothing left to interrupt
        kills += 1
    final = last_json(
        run_k2("ingest", "--until-idle", "2", *after_kills(k2_settings), env=k2_env).stdout
    )
    keys = Counter(stored_keys(k2_settings))
    assert kills >= 10
    assert len(keys) == truth["unique_records"]
    assert max(keys.values()) == 1
    gaps = json.loads(run_k2("gaps", "--format", "json", env=k2_env).stdout)
    assert gaps == truth["gaps"]
    assert final["pending_deferred"] == 0
