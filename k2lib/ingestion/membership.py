"""Where each partition starts, and a group member's partitions coming and going.

Every partition starts from the offsets the table records for it, unless those belong to
another topic or to this one before it was recreated. A group member's consumer tells its
`GroupMembership` of each rebalance: new partitions start from the table once what is
buffered is committed; leaving ones are committed first (the next owner starts from the
table, and a commit that comes too late is fenced by it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from k2lib.ingestion.consumer import GROUP_SETTLE_S
from k2lib.ingestion.seams import TableSink, TradeSource
from k2lib.ingestion.stages import Stages
from k2lib.storage.table import SnapshotOffsets

__all__ = ["GroupMembership", "reader_start", "start_offsets"]

log = logging.getLogger("k2.ingest")


def start_offsets(
    base: SnapshotOffsets, source: TradeSource, sink: TableSink, partitions: Collection[int]
) -> dict[int, int]:
    """What `base` records for `partitions`, if it records this topic as it is now."""
    if base.topic != source.topic:
        return {}
    current_id = sink.topic_id
    if base.topic_id and current_id and current_id != base.topic_id:
        return {}  # the topic was recreated: its offsets restart at 0
    return {p: o for p, o in base.offsets.items() if p in partitions}


def reader_start(
    base: SnapshotOffsets, source: TradeSource, sink: TableSink, *, first: bool
) -> dict[int, int]:
    """Where a lone reader starts its partitions: what `base` records for them. On the
    `first` start, a table whose offsets are for another log is read from the beginning."""
    start = start_offsets(base, source, sink, source.partitions)
    if first and base.offsets and not start:
        # Another topic, or this one recreated (a memory broker restarted: its offsets
        # restart at 0). Read it all; the dedup drops what the table already has.
        log.warning(
            "the table's offsets are for topic %s (id %s), not %s (id %s): reading it "
            "from the beginning",
            base.topic,
            base.topic_id,
            source.topic,
            sink.topic_id,
        )
        if base.topic == source.topic:
            source.resets.extend(sorted(base.offsets))
    return start


class MemberPipeline(Protocol):
    """What a membership reaches of its pipeline (`k2lib.ingestion.pipeline.IngestPipeline`)."""

    consumer: TradeSource
    writer: TableSink
    stages: Stages
    next_offsets: dict[int, int]
    committed_offsets: dict[int, int]

    def flush(self) -> bool: ...
    def rewind(self, reason: str) -> None: ...


class GroupMembership:
    """The consumer's rebalance listener for one group member's pipeline."""

    def __init__(self, pipeline: MemberPipeline, *, clock: Callable[[], float] = time.monotonic):
        self.pipeline = pipeline
        self.clock = clock
        self.started_at = clock()
        # Before subscribing, the consumer lists every partition of the topic.
        self.topic_partitions = frozenset(pipeline.consumer.partitions)
        self.joined = False  # a member waits for its first assignment
        self.assigned_at = 0.0
        self.closing = False  # leaving the group revokes every partition: commit nothing

    def idle_floor(self) -> float:
        """The time before which an idle poll does not count toward `until_idle_s`: the
        last assignment; and while this member owns only some of the topic's partitions,
        also `GROUP_SETTLE_S` after its start (a member that died holds its partitions
        until its session times out and the group has rebalanced)."""
        if self.topic_partitions <= set(self.pipeline.consumer.partitions):
            return self.assigned_at
        return max(self.started_at + GROUP_SETTLE_S, self.assigned_at)

    def assigned(self, partitions: list[int]) -> Mapping[int, int]:
        """New partitions: commit what is buffered, then start them from the table."""
        p = self.pipeline
        self.joined = True
        self.assigned_at = self.clock()
        p.flush()
        base = p.writer.adopt(partitions)
        p.stages.adopt(partitions)
        start = start_offsets(base, p.consumer, p.writer, partitions)
        recorded = [n for n in partitions if n in base.offsets]
        if base.topic == p.consumer.topic and recorded and not start:
            # The table's offsets belong to a topic the broker no longer has (recreated):
            # these partitions are read again from 0, as a lone reader's seek does.
            log.warning("topic %s was recreated: reading %s from 0", base.topic, recorded)
            p.consumer.resets.extend(recorded)
        p.next_offsets.update(start)
        p.committed_offsets.update(start)
        log.info("assigned partitions %s at %s", partitions, start)
        return start

    def revoked(self, partitions: list[int]) -> None:
        """Partitions leaving: commit what is buffered first. When the process is closing,
        its last commit has been made (or failed): nothing more is written."""
        p = self.pipeline
        if not self.closing and not p.flush():
            p.rewind("partitions revoked before their rows committed")
        p.writer.release(partitions)
        p.stages.release(partitions)
        if self.closing:
            return  # the run's summary keeps the offsets it reached
        for n in partitions:
            p.next_offsets.pop(n, None)
            p.committed_offsets.pop(n, None)
        log.info("revoked partitions %s", partitions)
