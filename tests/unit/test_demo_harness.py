"""k2lib.demo.harness: the background-ingest harness, over a stand-in pipeline. No services."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from k2lib.clock import ManualClock
from k2lib.demo import harness
from k2lib.demo.harness import BackgroundIngest, CommitStall, resilient_settled
from k2lib.resilience import DegradationLevel

pytestmark = [pytest.mark.unit]


class FakePipeline:
    """What the harness touches: run() until stop(), the consumed count, the buffer."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.counts = SimpleNamespace(consumed=0)
        self.buffer: list[Any] = []
        self.fail = fail
        self._stop = threading.Event()

    def run(self) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        self._stop.wait(10)
        return {"consumed": self.counts.consumed}

    def stop(self) -> None:
        self._stop.set()


def fake_replay(feed: list[int], settings: Any, *, progress: Any, **kw: Any) -> dict[str, Any]:
    for n in feed:
        progress(n)
    return {"published": sum(feed), "records": sum(feed) - kw.get("duplicates", 0)}


def test_commit_stall_stalls_only_the_armed_commits() -> None:
    stall = CommitStall(2.5)
    assert stall() == 0.0
    stall.arm(2)
    assert [stall(), stall(), stall()] == [2.5, 2.5, 0.0]


def test_publish_counts_messages_as_they_go_and_unique_records(monkeypatch) -> None:
    monkeypatch.setattr(harness, "replay", fake_replay)
    pipeline = FakePipeline()
    ingest = BackgroundIngest(pipeline).start()
    seen: list[int] = []
    summary = ingest.publish([3, 4], None, progress=seen.append, duplicates=2)  # type: ignore[arg-type]
    assert summary == {"published": 7, "records": 5}
    assert seen == [3, 4]  # the caller's progress still hears every chunk
    ingest.publish([5], None)  # type: ignore[arg-type]
    assert (ingest.published, ingest.sent_unique) == (12, 10)
    assert not ingest.caught_up()
    pipeline.counts.consumed = 12
    assert ingest.caught_up()
    assert ingest.stop() == {"consumed": 12}
    assert not ingest.alive


def test_wait_for_is_bounded_by_the_injected_clock() -> None:
    clock = ManualClock()
    ingest = BackgroundIngest(FakePipeline(), clock=clock, sleep=clock.advance).start()
    assert not ingest.wait_for(lambda: False, timeout_s=3.0, poll_s=1.0)
    assert clock() == pytest.approx(4.0)  # three polls, then past the deadline
    ticks = iter([False, False, True])
    assert ingest.wait_for(lambda: next(ticks), timeout_s=3.0, poll_s=1.0)
    ingest.stop()


def test_a_failed_pipeline_ends_the_wait_and_is_raised_by_stop() -> None:
    ingest = BackgroundIngest(FakePipeline(fail=RuntimeError("broker gone"))).start()
    ingest._thread.join(5)
    assert not ingest.wait_for(lambda: False, timeout_s=60.0, poll_s=0.01)
    with pytest.raises(RuntimeError, match="broker gone"):
        ingest.stop()


def test_resilient_settled_needs_normal_an_empty_spill_caught_up_and_no_buffer() -> None:
    stages = SimpleNamespace(
        manager=SimpleNamespace(level=DegradationLevel.NORMAL),
        spill=SimpleNamespace(pending_rows=lambda: 0),
    )
    pipeline = FakePipeline()
    assert resilient_settled(pipeline, stages, lambda: True)  # type: ignore[arg-type]
    assert not resilient_settled(pipeline, stages, lambda: False)  # type: ignore[arg-type]
    pipeline.buffer = ["batch"]
    assert not resilient_settled(pipeline, stages, lambda: True)  # type: ignore[arg-type]
    pipeline.buffer = []
    stages.manager.level = DegradationLevel.SOFT
    assert not resilient_settled(pipeline, stages, lambda: True)  # type: ignore[arg-type]
    stages.manager.level = DegradationLevel.NORMAL
    stages.spill.pending_rows = lambda: 3
    assert not resilient_settled(pipeline, stages, lambda: True)  # type: ignore[arg-type]
