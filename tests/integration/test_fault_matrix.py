"""The fault matrix: each fault end to end against the live stack, then the table is read
back and checked: every unique record once, and nothing else."""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from k2lib.connect import load_k2_catalog
from tests.helpers import last_json, replay_with_truth, run_k2, stored_keys

pytestmark = [pytest.mark.integration, pytest.mark.phase2]


def test_poison_flood_of_ten_percent(k2_settings, k2_env, tmp_path: Path):
    feed = ("synthetic", "--limit", "30000", "--faults", "poison=0.1", "--seed", "3")
    _, truth = replay_with_truth(tmp_path, *feed, env=k2_env)
    assert truth["poison"] > 2500
    out = last_json(run_k2("ingest", "--until-idle", "2", env=k2_env).stdout)
    assert out["dlq"] == truth["poison"]
    keys = stored_keys(k2_settings)
    assert len(keys) == len(set(keys)) == 30000


def test_malformed_csv_rows_are_counted_and_the_rest_stored(k2_settings, k2_env, tmp_path: Path):
    path = tmp_path / "trades.csv"
    rows = ["exchange,symbol,seq,ts,price,qty,side"]
    for i in range(1, 501):
        rows.append(f"csvx,ABCUSDT,{i},2024-08-09T00:00:{i % 60:02d}+00:00,10.5,1,buy")
    rows += [
        "csvx,ABCUSDT,,2024-08-09T00:00:00+00:00,1,1,",
        "csvx,ABCUSDT,9999,yesterday,1,1,",
        "csvx,ABCUSDT,9998,2024-08-09T00:00:00+00:00,-1,1,",
        "garbage line",
    ]
    path.write_text("\n".join(rows) + "\n")
    rep = last_json(run_k2("replay", str(path), env=k2_env).stdout)
    assert rep["records"] == 500 and rep["malformed_rows"] == 4
    assert any(":502" in r for r in rep["malformed_reasons"])
    run_k2("ingest", "--until-idle", "2", env=k2_env)
    assert len(set(stored_keys(k2_settings))) == 500


def test_truncated_capture_is_a_clear_error_not_a_traceback(
    k2_env, tmp_path: Path, binance_dir: Path
):
    raw = (binance_dir / "spot_ethusdt_20240808.gz").read_bytes()
    bad = tmp_path / "spot_ethusdt_truncated.gz"
    bad.write_bytes(raw[: len(raw) // 3])
    proc = run_k2("replay", str(bad), env=k2_env, check=False)
    assert proc.returncode == 2
    assert "unreadable capture" in proc.stderr and "Traceback" not in proc.stderr


def test_corrupt_gzip_lines_do_not_stop_the_file(k2_settings, k2_env, tmp_path: Path):
    good = (
        '1723161254087896568 {"stream":"x@trade","data":{"e":"trade","E":1,"s":"XUSDT",'
        '"t":%d,"p":"1.5","q":"2","T":1723161255342,"m":true}}'
    )
    lines = [good % i for i in range(1, 101)]
    lines.insert(50, '1723161254087896568 {"stream":"x@trade","data":{"e":"trade", broken')
    path = tmp_path / "spot_xusdt_20240808.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    rep = last_json(run_k2("replay", str(path), env=k2_env).stdout)
    assert rep["records"] == 100 and rep["malformed_rows"] == 1


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None,
    reason="needs root to mount a small tmpfs as a nearly full disk",
)
def test_disk_nearly_full_is_a_clear_error_with_no_partial_snapshot(stack_settings, tmp_path: Path):
    home = tmp_path / "smallhome"
    home.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(home)]).returncode:
        pytest.skip("cannot mount tmpfs here")
    try:
        tag = uuid.uuid4().hex[:8]
        settings = stack_settings.with_(
            home=home, topic=f"df.{tag}", dlq_topic=f"df.{tag}.dlq", table=f"df.t_{tag}"
        )
        env = {
            "K2_HOME": str(home),
            "K2_TOPIC": settings.topic,
            "K2_DLQ_TOPIC": settings.dlq_topic,
            "K2_TABLE": settings.table,
            "K2_METRICS_PORT": "0",
            "K2_KAFKA_BOOTSTRAP": stack_settings.kafka_bootstrap,
            "K2_REDIS_URL": stack_settings.redis_url,
        }
        from k2lib.connect import create_topics

        create_topics(settings, {settings.topic: 4, settings.dlq_topic: 1})
        run_k2("replay", "synthetic", "--limit", "20000", env=env)
        run_k2("ingest", "--until-idle", "1", "--plain", env=env)
        table = load_k2_catalog(settings).load_table(settings.table)
        snapshots_before = len(table.snapshots())
        filler = home / "filler"
        # Unbuffered, so no tail is left in a buffer for close() to fail on.
        with open(filler, "wb", buffering=0) as fh:
            try:
                while fh.write(b"\0" * 65536):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        os.truncate(filler, filler.stat().st_size - 40_000)
        run_k2("replay", "synthetic", "--limit", "20000", "--seed", "2", env=env)
        proc = run_k2("ingest", "--until-idle", "1", "--plain", env=env, check=False, timeout=120)
        assert proc.returncode == 2
        assert "no space left" in proc.stderr and "Traceback" not in proc.stderr
        table = load_k2_catalog(settings).load_table(settings.table)
        assert len(table.snapshots()) == snapshots_before
        assert len(stored_keys(settings)) == 20000
        filler.unlink()  # space back: the next run stores the rest, once
        run_k2("ingest", "--until-idle", "1", "--plain", env=env)
        keys = stored_keys(settings)
        assert len(keys) == len(set(keys)) == 40000
    finally:
        subprocess.run(["umount", "-l", str(home)])


def test_broker_wiped_then_feed_republished_keeps_history_and_counts_nothing_twice(
    own_broker, own_feed, own_env
):
    run_k2("replay", "synthetic", "--limit", "20000", "--seed", "31", env=own_env)
    first = last_json(run_k2("ingest", "--until-idle", "2", env=own_env).stdout)
    assert first["written"] == 20000
    own_broker.restart(own_feed)  # every topic is gone
    run_k2("replay", "synthetic", "--limit", "25000", "--seed", "31", env=own_env)
    second = last_json(run_k2("ingest", "--until-idle", "2", env=own_env).stdout)
    assert second["broker_resets"] == [0, 1, 2, 3]
    assert second["duplicates"] == 20000  # the re-published history
    assert second["written"] == 5000  # only what is new
    keys = stored_keys(own_feed)
    assert len(keys) == len(set(keys)) == 25000
