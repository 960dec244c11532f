"""`k2 bench notebooks`: the demo notebooks executed headless against the live stack.

No raw client does the same work, so the baseline is the demo's budget
(`k2lib.demo.BUDGET_S`) and the ratio is runtime / budget: at most 1 meets it. The
kernels' memory is sampled while they run (the largest total RSS of this process's
children), so the figure covers what the presenter's laptop must hold.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psutil

from k2lib.errors import K2Error

__all__ = ["PeakChildRss", "run"]

OUT = Path("reports/bench-notebooks")


class PeakChildRss:
    """Samples the summed RSS of this process's descendants on a background thread."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="k2-rss-sampler", daemon=True)

    def __enter__(self) -> PeakChildRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(self.interval_s):
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # exited between listing and reading
                    continue
            self.peak_bytes = max(self.peak_bytes, total)


def run(notebooks: Path | None = None, out: Path = OUT) -> dict[str, Any]:
    from k2lib.demo import BUDGET_S, default_notebooks, run_demo

    with PeakChildRss() as rss:
        report = run_demo(notebooks or default_notebooks(), out)
    if not report.ok:
        failed = ", ".join(r.name for r in report.runs if not r.ok)
        raise K2Error(f"notebooks failed ({failed}); no runtime is reported: see {report.index}")
    return {
        "name": "notebooks",
        "value": round(report.seconds, 1),
        "unit": "s",
        "baseline": BUDGET_S,
        "baseline_label": "the demo's budget for the notebooks (a target, not a measured peer)",
        "ratio": round(report.seconds / BUDGET_S, 3),
        "ratio_label": "ratio (runtime / budget)",
        "per_notebook_s": {r.name: round(r.seconds, 1) for r in report.runs},
        "peak_kernel_rss_mb": round(rss.peak_bytes / 2**20, 1),
        "report": str(report.index),
    }
