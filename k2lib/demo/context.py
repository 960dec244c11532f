"""What every notebook does first: settings from the environment, the stack up, logs captured.

`demo_context()` is idempotent: re-running the cell starts nothing twice (the stack's `up()`
leaves running services alone) and never registers a metric twice (each section builds its
own registry).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import k2lib
from k2lib.config import DEFAULT_HOME, K2Settings
from k2lib.stack import LocalStack, ServiceStatus

__all__ = [
    "DemoContext",
    "LogBuffer",
    "demo_context",
    "find_captures",
    "notebook_env",
    "stack_status",
]

LOG_LINES_KEPT = 500
SAMPLE_DIR = "data"  # the repo's top-level real sample: see data/README.md


class LogBuffer(logging.Handler):
    """Keeps K2's log lines for the notebook to show, instead of printing them to stderr
    in the middle of a cell whose output is compared line by line."""

    def __init__(self, capacity: int = LOG_LINES_KEPT) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=capacity)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def tail(self, n: int = 20) -> list[str]:
        return list(self.lines)[-n:]


def _install_log_buffer() -> LogBuffer:
    logger = logging.getLogger("k2")
    for old in [h for h in logger.handlers if isinstance(h, LogBuffer)]:
        logger.removeHandler(old)  # a re-run replaces the buffer instead of stacking them
    buffer = LogBuffer()
    logger.addHandler(buffer)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return buffer


def find_captures(env: dict[str, str] | None = None) -> Path | None:
    """The real Binance captures: `$K2_SHARED_DATA/binance`, else `<repo>/../shared/data`,
    else the trades sample shipped in `<repo>/data` (the same trades, without the order-book
    lines), so that a clone away from this workspace still replays real trades."""
    env = dict(os.environ) if env is None else env
    repo = Path(k2lib.__file__).resolve().parents[1]
    candidates = [Path(env["K2_SHARED_DATA"])] if env.get("K2_SHARED_DATA") else []
    candidates += [repo.parent / "shared" / "data", Path.cwd().parent.parent / "shared" / "data"]
    folders = [base / "binance" for base in candidates]
    folders += [repo / SAMPLE_DIR, Path.cwd().parent / SAMPLE_DIR]
    for folder in folders:
        if folder.is_dir() and any(folder.glob("*.gz")):
            return folder
    return None


def _is_sample(folder: Path) -> bool:
    return folder.name == SAMPLE_DIR and (folder / "README.md").is_file()


@dataclass(frozen=True)
class DemoContext:
    settings: K2Settings
    started: dict[str, str]
    captures: Path | None
    log: LogBuffer = field(repr=False)

    def line(self) -> str:
        """Stable across runs: which services of the data path are up, not their pids
        (Prometheus is in `stack_status`, notebook 00's `k2 status`)."""
        status = LocalStack(self.settings).status()
        parts = [
            f"{name} {'ok' if _healthy(s) else 'DOWN'}"
            for name, s in status.items()
            if name != "prometheus"
        ]
        return "local stack: " + ", ".join(parts)

    def captures_line(self) -> str:
        if self.captures is None:
            return "real Binance captures: not found (set K2_SHARED_DATA); synthetic feed only"
        files = sorted(p.name for p in self.captures.glob("*.gz"))
        if _is_sample(self.captures):
            where = "data/ (the trades sample shipped with K2)"
        elif os.environ.get("K2_SHARED_DATA"):
            where = "$K2_SHARED_DATA"
        else:
            where = "../shared/data"
        return f"real Binance captures: {len(files)} files found in {where}"


def _healthy(status: ServiceStatus | dict[str, object]) -> bool:
    if isinstance(status, ServiceStatus):
        return status.healthy
    return bool(status.get("healthy"))


# librdkafka prints informational lines to stderr (e.g. "Purging 1 unserved events" when
# a client is destroyed), at moments that vary run to run, into whichever cell is running.
# Notebook outputs are compared line by line, so the demo's clients log errors only.
KAFKA_LOG_LEVEL = "3"


def notebook_env(cwd: Path | None = None) -> dict[str, str]:
    """The environment, with K2_HOME pointing at the checkout's `.k2` when it is unset and
    the kernel runs in the checkout's `notebooks/` (as `jupyter lab notebooks/` starts it):
    the relative default would otherwise name an empty `notebooks/.k2`."""
    env = dict(os.environ)
    here = (cwd or Path.cwd()).resolve()
    in_checkout = here.name == "notebooks" and (here.parent / "pyproject.toml").is_file()
    if "K2_HOME" not in env and in_checkout:
        env["K2_HOME"] = str(here.parent / DEFAULT_HOME)
    return env


def demo_context() -> DemoContext:
    """Settings from the environment (`K2_HOME`, endpoints), the stack started if needed."""
    settings = K2Settings.from_env(notebook_env())
    settings = settings.with_(kafka_extra={"log_level": KAFKA_LOG_LEVEL, **settings.kafka_extra})
    buffer = _install_log_buffer()
    started = LocalStack(settings).up(monitoring=True)  # notebooks 00 and 03 read Prometheus
    return DemoContext(settings=settings, started=started, captures=find_captures(), log=buffer)


def stack_status(ctx: DemoContext) -> list[str]:
    """`k2 status`, as lines: health, endpoint and whether K2 manages the service."""
    lines = []
    for name, s in LocalStack(ctx.settings).status().items():
        if isinstance(s, ServiceStatus):
            mark = "ok  " if s.healthy else "DOWN"
            owner = "managed by k2 up" if s.managed else "external"
            endpoint = s.endpoint.replace(str(ctx.settings.home), "$K2_HOME")
            lines.append(f"{mark} {name:8s} {endpoint}  ({owner})")
    return lines
