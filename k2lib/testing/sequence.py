"""An in-process twin of `RedisSequenceTracker` on the Python reference rules, for unit tests
and benchmarks. State dies with the process."""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client import CollectorRegistry

from k2lib.ingestion.sequence import Gap, SequenceConfig, SequenceTracker
from k2lib.ingestion.sequence._reference import KeyState, classify_key
from k2lib.ingestion.sequence._runs import RunOutcome, RunPlan

__all__ = ["MemorySequenceTracker"]


class MemorySequenceTracker(SequenceTracker):
    """Same semantics as `RedisSequenceTracker`, record for record, without Redis."""

    def __init__(
        self, *, config: SequenceConfig | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        super().__init__(config=config, registry=registry)
        self._states: dict[tuple[str, str], KeyState] = {}
        self._lock = threading.Lock()

    def _apply(self, plan: RunPlan) -> RunOutcome:
        with self._lock:
            runs = plan.runs.tolist()
            lengths: list[int] = []
            labels: list[int] = []
            new_gaps: list[tuple[int, int, int]] = []
            sessions: list[int] = []
            abandoned = 0
            pos = 0
            for k, key in enumerate(plan.keys):
                count = int(plan.runs_per_key[k])
                out = classify_key(self._states.get(key), runs[pos : pos + count], self.config)
                pos += count
                self._states[key] = out.state
                for length, label in out.segments:
                    lengths.append(length)
                    labels.append(label)
                new_gaps.extend((k, lo, hi) for lo, hi in out.new_gaps)
                abandoned += out.abandoned
                sessions.extend(out.run_sessions)
        return RunOutcome(
            seg_len=np.asarray(lengths, np.int64),
            seg_label=np.asarray(labels, np.int8),
            new_gaps=new_gaps,
            abandoned=abandoned,
            run_sessions=np.asarray(sessions, np.int64),
        )

    def open_gaps(self) -> list[Gap]:
        with self._lock:
            return sorted(
                Gap(exchange, symbol, lo, hi)
                for (exchange, symbol), state in self._states.items()
                for lo, hi, _ in state.gaps
            )
