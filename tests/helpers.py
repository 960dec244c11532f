"""Helpers for tests that drive the real `k2` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_k2(
    *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real `k2` CLI in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "k2lib.cli.main", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"k2 {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def last_json(stdout: str) -> dict:
    """The JSON summary a run prints as its last line of stdout."""
    return json.loads(stdout.strip().splitlines()[-1])


def stored_keys(settings) -> list[tuple[str, str, int]]:
    """Every `(exchange, symbol, seq)` in the settings' Iceberg table, duplicates included."""
    from k2lib.connect import load_k2_catalog
    from k2lib.storage.table import stored_keys as table_keys

    return table_keys(load_k2_catalog(settings).load_table(settings.table))
