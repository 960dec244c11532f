"""The headless demo: the notebooks executed in story order, and the HTML report.

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
