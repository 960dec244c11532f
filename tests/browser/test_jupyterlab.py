"""A real browser: JupyterLab in headless Chromium runs notebook 03 and moves its widget.

JupyterLab serves a temporary copy of `03_monitoring_degradation.ipynb` (so autosave never
touches the committed notebook) on loopback with a random token. Playwright drives
Debian's `/usr/bin/chromium` (no browser download): Run All Cells, wait for the last cell,
click a level on the degradation widget, and wait for the widget's output to report it.
The screenshot goes to `reports/browser/03_degradation.png`.

Needs the live stack (the notebook starts it, as `k2 up` would) and `apt-get install
chromium`; skipped with the reason when Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, require_chromium

pytestmark = [pytest.mark.browser, pytest.mark.phase2, pytest.mark.resilience]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "03_monitoring_degradation.ipynb"
SCREENSHOT = ROOT / "reports" / "browser" / "03_degradation.png"
LAB_START_TIMEOUT_S = 60
RUN_ALL_TIMEOUT_S = 240
TARGET_LEVEL = "AGGRESSIVE"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """JupyterLab on 127.0.0.1:<free port>, serving a copy of notebook 03; yields its URL."""
    require_chromium()
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    port, token = free_port(), secrets.token_hex(16)
    log = (root / "lab.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--ServerApp.token={token}",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + LAB_START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"JupyterLab did not start:\n{(root / 'lab.log').read_text()}")
            time.sleep(0.5)
    try:
        yield f"{base}/lab/tree/{NOTEBOOK}?token={token}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its kernel: our own group
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_degradation_widget_changes_the_level_in_jupyterlab(lab: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(lab)
            notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
            expect(notebook).to_be_visible(timeout=60_000)
            expect(page.get_by_role("button", name="Python 3 (ipykernel) | Idle")).to_be_visible(
                timeout=60_000
            )
            news = page.get_by_role("alert").get_by_role("button", name="No", exact=True)
            if news.count():
                news.click()  # the "official Jupyter news?" prompt would cover the page

            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            # Done when the last code cell has its output and no cell is still queued.
            last = notebook.locator(".jp-CodeCell").last
            expect(last.locator(".jp-OutputArea-output").first).to_be_attached(
                timeout=RUN_ALL_TIMEOUT_S * 1000
            )
            expect(notebook.locator(".jp-InputPrompt", has_text="[*]")).to_have_count(
                0, timeout=RUN_ALL_TIMEOUT_S * 1000
            )
            expect(
                notebook.locator(".jp-OutputArea-output", has_text="exactly once: yes")
            ).to_have_count(1)

            # The degradation widget: its toggle buttons, and the Output box under them.
            widget = notebook.locator(
                ".widget-vbox", has=page.locator(".widget-toggle-buttons", has_text="CIRCUIT_BREAK")
            ).first
            widget.scroll_into_view_if_needed()
            expect(widget.locator(".widget-output")).to_contain_text("level ")
            widget.get_by_role("button", name=TARGET_LEVEL, exact=True).click()
            expect(widget.locator(".widget-output")).to_contain_text(
                f"level {TARGET_LEVEL} (forced)", timeout=30_000
            )
            widget.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOT))
            text = widget.locator(".widget-output").inner_text()
        finally:
            browser.close()
    assert f"level {TARGET_LEVEL} (forced): tiers 1-1" in text
    assert SCREENSHOT.stat().st_size > 10_000
