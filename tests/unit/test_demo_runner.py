"""The demo runner's environment for kernels, and the notebook benchmark's RSS sampler."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from k2lib.bench.notebooks import PeakChildRss
from k2lib.demo.runner import kernel_env

pytestmark = pytest.mark.unit


def test_kernels_get_an_absolute_k2_home(monkeypatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("K2_HOME", "state/k2")
    assert kernel_env()["K2_HOME"] == str(tmp_path / "state" / "k2")
    monkeypatch.delenv("K2_HOME")
    env = kernel_env()
    assert env["K2_HOME"] == str(tmp_path / ".k2")
    assert env["PATH"]  # the rest of the environment is kept


def test_peak_child_rss_sees_a_child_process():
    with PeakChildRss(interval_s=0.05) as rss:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.0)"])
        deadline = time.monotonic() + 5
        while rss.peak_bytes == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        child.wait()
    assert rss.peak_bytes > 1_000_000  # a Python interpreter holds megabytes


def test_a_kernel_in_the_checkouts_notebooks_dir_uses_the_checkouts_home(
    monkeypatch, tmp_path: Path
):
    from k2lib.demo.context import notebook_env

    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'k2lib'\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.delenv("K2_HOME", raising=False)
    assert notebook_env(tmp_path / "notebooks")["K2_HOME"] == str(tmp_path / ".k2")
    assert "K2_HOME" not in notebook_env(tmp_path)  # elsewhere: the usual default
    monkeypatch.setenv("K2_HOME", "/srv/k2")
    assert notebook_env(tmp_path / "notebooks")["K2_HOME"] == "/srv/k2"  # explicit wins
