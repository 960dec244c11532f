"""A pipeline run: poll until done, then commit what is left, and stop on a signal.

Done is `max_messages` consumed, or `until_idle_s` without a message once everything
consumed is committed and nothing waits to be backfilled. A group member's idle time
counts from its first assignment. A run whose last commit rewound (fenced, or Redis lost
its state) reads the dropped records again before it ends.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any, Protocol

from k2lib.errors import StorageError
from k2lib.ingestion.seams import IngestConfig, IngestCounts

__all__ = ["GROUP_JOIN_TIMEOUT_S", "run_until_done"]

log = logging.getLogger("k2.ingest")

GROUP_JOIN_TIMEOUT_S = 60.0
FINAL_COMMIT_WAIT_S = 1.0


class IngestPipeline(Protocol):
    """What a run drives (`k2lib.ingestion.pipeline.IngestPipeline`)."""

    counts: IngestCounts
    config: IngestConfig
    clock: Callable[[], float]
    sleep: Callable[[float], None]

    @property
    def joined(self) -> bool: ...
    @property
    def stopped(self) -> bool: ...
    def step(self, max_messages: int | None = None) -> int: ...
    def pending_work(self) -> bool: ...
    def idle_floor(self) -> float: ...
    def flush(self) -> bool: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


def run_until_done(
    pipeline: IngestPipeline,
    max_messages: int | None,
    until_idle_s: float | None,
    progress: Callable[[int], object] | None,
) -> None:
    previous = _install_stop(pipeline)
    try:
        while True:
            _consume(pipeline, max_messages, until_idle_s, progress)
            rewinds = pipeline.counts.rewinds
            _final_commit(pipeline)
            if pipeline.stopped or pipeline.counts.rewinds == rewinds:
                break
            if _reached(pipeline, max_messages):
                break
    finally:
        _restore_stop(previous)
        pipeline.close()


def _consume(
    pipeline: IngestPipeline,
    max_messages: int | None,
    until_idle_s: float | None,
    progress: Callable[[int], object] | None,
) -> None:
    clock = pipeline.clock
    idle_since: float | None = None
    waiting_since = clock()
    while not pipeline.stopped and not _reached(pipeline, max_messages):
        remaining = None if max_messages is None else max_messages - pipeline.counts.consumed
        n = pipeline.step(remaining)
        if progress and n:
            progress(n)
        if not pipeline.joined:
            if clock() - waiting_since >= GROUP_JOIN_TIMEOUT_S:
                log.warning(
                    "no assignment from group %s after %.0f s: ending",
                    pipeline.config.group_id,
                    GROUP_JOIN_TIMEOUT_S,
                )
                return
            continue
        if n or pipeline.pending_work():
            idle_since = None
        elif until_idle_s is not None:
            idle_since = idle_since if idle_since is not None else clock()
            # A group member's idleness counts only once the group has settled: members
            # that died hold their partitions until their session times out.
            if clock() - max(idle_since, pipeline.idle_floor()) >= until_idle_s:
                return


def _reached(pipeline: IngestPipeline, max_messages: int | None) -> bool:
    return max_messages is not None and pipeline.counts.consumed >= max_messages


def _final_commit(pipeline: IngestPipeline) -> None:
    """The run's last commit; a dependency that stays down ends the run with an error."""
    attempts = pipeline.config.final_commit_attempts
    for _ in range(attempts):
        if pipeline.flush():
            return
        pipeline.sleep(FINAL_COMMIT_WAIT_S)
    raise StorageError(
        f"could not commit the final batch after {attempts} attempts; "
        "nothing was lost: the next run resumes from the last snapshot"
    )


def _install_stop(pipeline: IngestPipeline) -> Any:
    def handler(signum: int, frame: Any) -> None:
        pipeline.stop()

    try:
        return signal.signal(signal.SIGTERM, handler), signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (a notebook or test thread)
        return None


def _restore_stop(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
