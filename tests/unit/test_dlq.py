"""The DLQ's delivery bookkeeping with producer twins: a producer that never hears back from
its broker is replaced, and its messages are produced again through the new one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from k2lib.config import K2Settings
from k2lib.errors import ServiceError
from k2lib.ingestion.dlq import DeadLetterQueue
from k2lib.wire.codec import Reject

pytestmark = [pytest.mark.unit]


class Producer:
    """Acknowledges on flush, or (`stuck`) never: what an idempotent producer does while it
    retries against a broker that lost its state."""

    def __init__(self, *, stuck: bool) -> None:
        self.stuck = stuck
        self.waiting: list[tuple[bytes, Any]] = []
        self.delivered: list[bytes] = []
        self.purged = False

    def produce(self, topic: str, *, value: bytes, headers: Any, on_delivery: Any) -> None:
        self.waiting.append((value, on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        if not self.stuck:
            for value, callback in self.waiting:
                self.delivered.append(value)
                callback(None, None)
            self.waiting = []
        return len(self.waiting)

    def purge(self, **kwargs: bool) -> None:
        self.purged = True


def test_a_stuck_producer_is_replaced_and_its_messages_are_sent_again(tmp_path: Path) -> None:
    producers = [Producer(stuck=True), Producer(stuck=False)]
    made = iter(producers)
    dlq = DeadLetterQueue(K2Settings(home=tmp_path, topic="t"), producer_factory=lambda: next(made))
    dlq.send([Reject(i, "bad", b"x%d" % i) for i in range(3)], [0, 0, 1], [5, 6, 2])
    with pytest.raises(ServiceError, match="3 messages unacknowledged"):
        dlq.flush(timeout_s=0.0)  # the offsets stay uncommitted
    stuck, fresh = producers
    assert stuck.purged and dlq.producer is fresh
    for _, callback in stuck.waiting:  # what the old producer says later changes nothing
        callback("purged", None)
    dlq.flush(timeout_s=0.0)
    assert fresh.delivered == [b"x0", b"x1", b"x2"]
    dlq.flush(timeout_s=0.0)  # nothing left, nothing sent twice
    assert fresh.delivered == [b"x0", b"x1", b"x2"]


def test_a_refused_message_is_produced_again_by_the_next_flush(tmp_path: Path) -> None:
    producer = Producer(stuck=False)
    dlq = DeadLetterQueue(K2Settings(home=tmp_path, topic="t"), producer_factory=lambda: producer)
    dlq.send([Reject(0, "bad", b"x")], [0], [1])
    ((_, callback),) = producer.waiting
    producer.waiting = []
    callback("refused", None)
    dlq.flush(timeout_s=0.0)  # produces it again, and it is acknowledged this time
    assert producer.delivered == [b"x"]
