"""Shared test helpers: paths to the real captures, and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("K2_SHARED_DATA", ROOT.parent / "shared" / "data"))
SAMPLE = ROOT / "data"  # the trades of the same captures, shipped in the repo
BINANCE = SHARED_DATA / "binance" if (SHARED_DATA / "binance").is_dir() else SAMPLE


@pytest.fixture(scope="session")
def binance_dir() -> Path:
    if not BINANCE.is_dir() or not list(BINANCE.glob("*.gz")):
        pytest.skip(f"real Binance captures not found at {BINANCE} (set K2_SHARED_DATA)")
    return BINANCE
