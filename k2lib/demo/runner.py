"""`k2 demo`: execute the notebooks in order, headless, against the live stack; write a report.

Each notebook runs in a fresh kernel (nbclient), exactly as a presenter's "Restart and run
all" would. The executed copies and one HTML page per notebook go under `out/`, with an
`index.html` that links them and records how long each took. Plotly figures travel in the
notebooks as JSON (`application/vnd.plotly.v1+json`, rendered natively by JupyterLab); the
report gives each one an HTML rendering against one local copy of plotly.js, so it opens
offline. Widgets appear as static snapshots of the state they had when the cell ran
(`widget_snapshot`), and the index marks each run with an inline SVG icon, not an emoji a
headless browser may lack the font for. The kernels' stderr goes to `out/kernels.log`.
"""

from __future__ import annotations

import html
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import nbformat
import plotly
import plotly.io as pio
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter

from k2lib.config import DEFAULT_HOME
from k2lib.demo.widget_snapshot import add_widget_snapshots

__all__ = [
    "BUDGET_S",
    "DEFAULT_NOTEBOOKS",
    "DemoReport",
    "NotebookRun",
    "default_notebooks",
    "export_html",
    "find_notebooks",
    "index_html",
    "run_demo",
]

DEFAULT_NOTEBOOKS = (
    "00_positioning",
    "01_ingestion",
    "02_storage",
    "03_monitoring_degradation",
    "04_hybrid_query",
    "05_cost",
)
BUDGET_S = 180.0
CELL_TIMEOUT_S = 150
PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLY_JS = "plotly.min.js"


@dataclass
class NotebookRun:
    name: str
    seconds: float
    ok: bool
    error: str = ""
    html: str = ""


@dataclass
class DemoReport:
    out: Path
    runs: list[NotebookRun] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs)

    @property
    def index(self) -> Path:
        return self.out / "index.html"

    def lines(self) -> list[str]:
        rows = [f"{'ok  ' if r.ok else 'FAIL'} {r.name:28s} {r.seconds:6.1f}s" for r in self.runs]
        verdict = "within" if self.seconds <= BUDGET_S else "OVER"
        rows.append(f"total {self.seconds:.1f}s ({verdict} the {BUDGET_S:.0f}s budget)")
        return rows


def default_notebooks() -> Path:
    """`notebooks/` of this checkout (the package sits beside it), else of the cwd."""
    import k2lib

    beside = Path(k2lib.__file__).resolve().parents[1] / "notebooks"
    return beside if beside.is_dir() else Path.cwd() / "notebooks"


def find_notebooks(directory: Path, names: Sequence[str] | None = None) -> list[Path]:
    """The notebooks to run, in story order. `names` may omit the `.ipynb` or the number."""
    wanted = list(names) if names else list(DEFAULT_NOTEBOOKS)
    available = sorted(directory.glob("*.ipynb"))
    found = []
    for name in wanted:
        stem = name.removesuffix(".ipynb")
        match = [p for p in available if p.stem == stem or p.stem.split("_", 1)[-1] == stem]
        if not match:
            raise FileNotFoundError(f"no notebook {name!r} in {directory}")
        found.append(match[0])
    return found


def _plotly_html(figure: Any) -> str:
    fig = pio.from_json(_json_text(figure), skip_invalid=True)
    return str(pio.to_html(fig, include_plotlyjs=False, full_html=False))


def _add_plotly_html(nb: nbformat.NotebookNode) -> None:
    """Give every plotly output an HTML rendering (for the report only)."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME in data and "text/html" not in data:
                data["text/html"] = _plotly_html(data[PLOTLY_MIME])


def _json_text(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)


def export_html(nb: nbformat.NotebookNode, title: str) -> str:
    report_nb = nbformat.from_dict(nb)
    _add_plotly_html(report_nb)
    add_widget_snapshots(report_nb, _plotly_html)
    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(report_nb, resources={"metadata": {"name": title}})
    # plotly.js first: loaded after the page's require.js it would register as an AMD module
    # and never define window.Plotly.
    return body.replace("<head>", f'<head>\n<script src="{PLOTLY_JS}"></script>', 1)


def kernel_env() -> dict[str, str]:
    """This environment, with K2_HOME absolute: kernels start in the notebooks' directory,
    where a relative (or default) K2_HOME would name a different, empty home."""
    home = Path(os.environ.get("K2_HOME", DEFAULT_HOME)).expanduser().resolve()
    return {**os.environ, "K2_HOME": str(home)}


def _execute(path: Path, cwd: Path, log: IO[str]) -> tuple[nbformat.NotebookNode, str]:
    """Run every cell in a fresh kernel (its stderr into `log`); returns the error, if any."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        store_widget_state=True,
        record_timing=False,
    )
    try:
        client.execute(stderr=log, env=kernel_env())
    except CellExecutionError as exc:
        return nb, str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
    except Exception as exc:  # a dead kernel or a timeout: report it, run the next notebook
        return nb, f"{type(exc).__name__}: {exc}"
    return nb, ""


# Status icons as inline SVG: an emoji (U+2705, U+274C) draws as an empty box wherever no
# emoji font is installed, as in a headless Chromium on a server.
OK_ICON = (
    "<svg class='k2-status k2-ok' role='img' aria-label='ok' width='18' height='18' "
    "viewBox='0 0 18 18'><circle cx='9' cy='9' r='9' fill='#2e9e44'/><path "
    "d='M4.5 9.5l3 3 6-7' stroke='#fff' stroke-width='2.2' fill='none'/></svg>"
)
FAIL_ICON = (
    "<svg class='k2-status k2-fail' role='img' aria-label='failed' width='18' height='18' "
    "viewBox='0 0 18 18'><circle cx='9' cy='9' r='9' fill='#d03a2f'/><path "
    "d='M5.5 5.5l7 7m0-7l-7 7' stroke='#fff' stroke-width='2.2'/></svg>"
)


def index_html(report: DemoReport) -> str:
    rows = "\n".join(
        f"<tr><td>{OK_ICON if r.ok else FAIL_ICON}</td><td><a href='{html.escape(r.html)}'>"
        f"{html.escape(r.name)}</a></td><td>{r.seconds:.1f} s</td>"
        f"<td>{html.escape(r.error)}</td></tr>"
        for r in report.runs
    )
    budget = "within" if report.seconds <= BUDGET_S else "over"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>K2 demo report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}
td,th{{padding:.3em .8em;text-align:left}}tr:nth-child(even){{background:#f4f6f8}}</style>
</head><body>
<h1>K2 in ten minutes: demo report</h1>
<p>Executed headless against the live local stack, in story order.
Total <b>{report.seconds:.1f} s</b> ({budget} the {BUDGET_S:.0f} s budget).</p>
<table><tr><th></th><th>notebook</th><th>runtime</th><th>error</th></tr>
{rows}
</table></body></html>
"""


def run_demo(
    notebooks: Path,
    out: Path,
    *,
    names: Sequence[str] | None = None,
    write_back: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> DemoReport:
    """Execute the notebooks in order; write executed copies, HTML pages and index.html."""
    paths = find_notebooks(notebooks, names)
    (out / "executed").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / PLOTLY_JS, out / PLOTLY_JS)
    (out / "kernels.log").write_text("")  # the kernels' own stderr, kept out of the console
    report = DemoReport(out=out)
    started = time.monotonic()
    for path in paths:
        progress(f"running {path.name} ...")
        t0 = time.monotonic()
        with (out / "kernels.log").open("a") as log:
            nb, error = _execute(path, path.parent, log)
        run = NotebookRun(path.stem, time.monotonic() - t0, ok=not error, error=error)
        nbformat.write(nb, out / "executed" / path.name)
        if write_back and run.ok:
            nbformat.write(nb, path)
        run.html = f"{path.stem}.html"
        (out / run.html).write_text(export_html(nb, path.stem), encoding="utf-8")
        report.runs.append(run)
        progress(
            f"{'ok' if run.ok else 'FAILED'} {path.name} in {run.seconds:.1f}s"
            + (f": {error}" if error else "")
        )
    report.seconds = time.monotonic() - started
    report.index.write_text(index_html(report), encoding="utf-8")
    return report
