"""The demo: the notebooks' stories, the chaos run, and the headless demo with its report.

The notebooks call `k2lib.demo.stories` (one module a notebook) and draw with `k2lib.viz`.
Beside the stories: `context` (settings, the stack up), `workspace` (a notebook's own topic
and table), `readback` (the DLQ and table read back), `sampling` (counters and /metrics over
time), `harness` (the pipeline in a background thread while a replay publishes, then the
exactly-once check: behind the stories, `chaos` and the soak bench), `chaos` (`k2 chaos`).
The headless demo runs the notebooks in story order:

from k2lib.demo import run_demo
report = run_demo(Path("notebooks"), Path("reports/demo"))
report.index, report.seconds, report.ok
"""

from k2lib.demo.runner import (
    BUDGET_S,
    DEFAULT_NOTEBOOKS,
    DemoReport,
    NotebookRun,
    default_notebooks,
    find_notebooks,
    run_demo,
)

__all__ = [
    "BUDGET_S",
    "DEFAULT_NOTEBOOKS",
    "DemoReport",
    "NotebookRun",
    "default_notebooks",
    "find_notebooks",
    "run_demo",
]
