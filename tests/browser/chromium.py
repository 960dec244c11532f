"""The Chromium both browser tests drive: Debian's `/usr/bin/chromium` through Playwright,
headless, with no network of its own (no updates, sync or first-run pages)."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip, with the reason, when Chromium or Playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: `apt-get install -y chromium` to run this test")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
