"""Gaps and duplicates found exactly, through the real pipeline, on real and synthetic feeds."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import after_kills, last_json, run_k2, stored_keys

pytestmark = [pytest.mark.integration, pytest.mark.scalability, pytest.mark.phase2]


def test_real_captures_with_injected_faults_gaps_and_dups_equal_truth(
    k2_settings, k2_env, binance_dir: Path, tmp_path: Path
):
    truth_path = tmp_path / "truth.json"
    run_k2(
        "replay",
        str(binance_dir),
        "--faults",
        "dup=0.01,gap=0.002,reorder=0.01",
        "--seed",
        "17",
        "--truth",
        str(truth_path),
        env=k2_env,
    )
    truth = json.loads(truth_path.read_text())
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
    truth_path = tmp_path / "truth.json"
    run_k2(
        "replay",
        "synthetic",
        "--limit",
        "200000",
        "--faults",
        "dup=0.01,gap=0.001,reorder=0.005,poison=0.001",
        "--seed",
        "23",
        "--truth",
        str(truth_path),
        env=k2_env,
    )
    truth = json.loads(truth_path.read_text())
    rng = random.Random(7)
    kills = 0
    while kills < 20:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "k2lib.cli.main",
                "ingest",
                "--until-idle",
                "2",
                "--commit-rows",
                "5000",
                "--commit-interval",
                "0.2",
            ],
            env={**os.environ, **k2_env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(1.2, 3.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
            proc.wait(timeout=30)
        else:
            break  # it finished everything before the kill: nothing left to interrupt
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
