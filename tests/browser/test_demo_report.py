"""The static demo report in headless Chromium: widgets are drawn, and the icons are glyphs.

The report pages are written by the demo runner's own `export_html` and `index_html` from
the committed (executed) notebooks that hold widgets, into a temporary directory, and
opened from disk with no network, as a reader would open `reports/demo/`. Playwright
drives Debian's `/usr/bin/chromium`; the pixels are read back from its own screenshots
through a canvas in the same page. Screenshots go to `reports/browser/`.

- Each widget output is a snapshot (`.k2-widget`) of real height whose pixels are not one
  colour, and a plotly figure inside a widget's output is drawn.
- Each status icon of the index is drawn in its colour, and differs from what Chromium
  draws for a character no installed font has (the empty box the emoji icons became).
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import nbformat
import plotly
import pytest

from k2lib.demo.runner import PLOTLY_JS, DemoReport, NotebookRun, export_html, index_html
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, require_chromium

pytestmark = [pytest.mark.browser, pytest.mark.phase2]

ROOT = Path(__file__).resolve().parents[2]
WIDGET_NOTEBOOKS = ("02_storage", "04_hybrid_query", "05_cost")
WITH_FIGURE = ("04_hybrid_query", "05_cost")  # their widget's Output holds a plotly figure
SHOTS = ROOT / "reports" / "browser"
MISSING_GLYPH = "\U000f0000"  # Supplementary Private Use Area-A: in no default font
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# Colour statistics of a PNG, computed by the browser that took it.
PIXELS_JS = """async (b64) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + b64;
  await img.decode();
  const c = document.createElement('canvas');
  c.width = img.width; c.height = img.height;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const colours = new Set();
  let green = 0, red = 0, ink = 0;
  for (let i = 0; i < d.length; i += 4) {
    const [r, gr, b] = [d[i], d[i + 1], d[i + 2]];
    colours.add((r << 16) | (gr << 8) | b);
    if (gr > 120 && gr > r + 50 && gr > b + 50) green++;
    if (r > 150 && r > gr + 80 && r > b + 80) red++;
    if (r + gr + b < 600) ink++;
  }
  return {colours: colours.size, green, red, ink, pixels: d.length / 4,
          signature: Array.from(d.filter((_, i) => i % 4 !== 3)).join(',')};
}"""


def widget_outputs(nb: nbformat.NotebookNode) -> int:
    return sum(WIDGET_VIEW in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The report pages of the widget notebooks and an index with a passed and a failed run."""
    require_chromium()
    out = tmp_path_factory.mktemp("report")
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / PLOTLY_JS, out / PLOTLY_JS)
    runs, widgets = DemoReport(out=out), {}
    for name in WIDGET_NOTEBOOKS:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        widgets[name] = widget_outputs(nb)
        (out / f"{name}.html").write_text(export_html(nb, name), encoding="utf-8")
        runs.runs.append(NotebookRun(name, 1.0, ok=True, html=f"{name}.html"))
    runs.runs.append(NotebookRun("99_failed", 1.0, ok=False, error="boom", html="x.html"))
    runs.index.write_text(index_html(runs), encoding="utf-8")
    return out, widgets


@pytest.fixture(scope="module")
def browser() -> Any:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def pixels(page: Any, png: bytes) -> dict[str, Any]:
    return dict(page.evaluate(PIXELS_JS, base64.b64encode(png).decode()))


def offline_page(browser: Any) -> Any:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.route("http*://**", lambda route: route.abort())  # a report must open offline
    return page


@pytest.mark.parametrize("name", WIDGET_NOTEBOOKS)
def test_widget_cells_show_a_snapshot(
    report: tuple[Path, dict[str, int]], browser: Any, name: str
) -> None:
    out, widgets = report
    assert widgets[name] >= 1, f"{name} has no widget output to check"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = offline_page(browser)
    page.goto((out / f"{name}.html").as_uri())
    snapshots = page.locator(".k2-widget")
    assert snapshots.count() == widgets[name]
    for i in range(snapshots.count()):
        snap = snapshots.nth(i)
        snap.scroll_into_view_if_needed()
        box = snap.bounding_box()
        assert box is not None and box["height"] > 40 and box["width"] > 200, box
        png = snap.screenshot(path=str(SHOTS / f"report_{name}_widget{i}.png"))
        stats = pixels(page, png)
        assert stats["colours"] > 20 and stats["ink"] > stats["pixels"] * 0.01, stats
    if name in WITH_FIGURE:
        figure = page.locator(".k2-widget .plotly-graph-div .main-svg").first
        figure.wait_for(state="attached", timeout=20_000)  # plotly.js drew the figure
        traces = page.evaluate(
            "() => document.querySelector('.k2-widget .plotly-graph-div')._fullData.length"
        )
        assert traces >= 1  # plotly.js laid out the figure's traces
    page.close()


def test_index_icons_are_drawn_not_empty_boxes(
    report: tuple[Path, dict[str, int]], browser: Any
) -> None:
    out, _ = report
    page = offline_page(browser)
    page.goto(out.joinpath("index.html").as_uri())
    page.screenshot(path=str(SHOTS / "report_index.png"), full_page=True)
    # what Chromium draws for a character no font has, at the icon's size
    page.evaluate(
        "(ch) => { const s = document.createElement('span'); s.id = 'tofu';"
        " s.style = 'font-size:18px;display:inline-block'; s.textContent = ch;"
        " document.body.appendChild(s); }",
        MISSING_GLYPH,
    )
    tofu = pixels(page, page.locator("#tofu").screenshot())
    icons = page.locator("svg.k2-status")
    assert icons.count() == 4
    for i in range(icons.count()):
        icon = icons.nth(i)
        stats = pixels(page, icon.screenshot())
        failed = "k2-fail" in (icon.get_attribute("class") or "")
        colour = stats["red"] if failed else stats["green"]
        assert colour > stats["pixels"] * 0.3, (i, stats["green"], stats["red"])
        assert stats["signature"] != tofu["signature"]
    status_cells = page.locator("table tr td:first-child")
    texts = [t.strip() for t in status_cells.all_inner_texts()]
    assert texts == [""] * 4, json.dumps(texts)  # no emoji or other font-dependent glyph
    page.close()
