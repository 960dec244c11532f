"""Injected time. Components take `clock: Clock = time.monotonic`; tests pass a ManualClock."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Clock", "ManualClock"]

Clock = Callable[[], float]


class ManualClock:
    """A clock that moves only when told to. Thread-safe; never sleeps."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        with self._lock:
            self._now = now
