"""The `reset` fault: a venue that restarts a symbol's numbering, with the other faults on
top, checked against its truth by the sequence tracker and the deduplicator twins."""

from __future__ import annotations

import numpy as np
import pytest

from k2lib.clock import ManualClock
from k2lib.errors import ConfigError
from k2lib.feeds.faults import RESET_AFTER, FaultInjector, FaultSpec
from k2lib.feeds.synthetic import SyntheticConfig, SyntheticFeed
from k2lib.ingestion.dedup import CommitAlignedDeduplicator, DedupConfig
from k2lib.testing import MemoryDedupStore, MemorySequenceTracker
from k2lib.wire.codec import decode_batch

pytestmark = [pytest.mark.unit]


def published(spec: FaultSpec, *, seed: int, records: int = 30_000) -> tuple[list, FaultInjector]:
    feed = SyntheticFeed(SyntheticConfig(seed=seed, records=records, symbols=3, start_us=10**15))
    injector = FaultInjector(spec, seed)
    values: list[bytes] = []
    for batch in feed.batches(chunk=4_000):
        values.extend(injector.apply(batch)[1])
    return values, injector


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_resets_with_every_other_fault_match_their_truth(seed: int) -> None:
    spec = FaultSpec.parse("reset=0.0008,dup=0.01,gap=0.002,reorder=0.01,poison=0.001")
    values, injector = published(spec, seed=seed)
    truth = injector.truth.as_dict()
    assert truth["resets"] >= 2, truth["resets"]
    tracker = MemorySequenceTracker()
    dedup = CommitAlignedDeduplicator(
        MemoryDedupStore(), config=DedupConfig(capacity=100_000), wall_clock=ManualClock(1e9)
    )
    stored = 0
    keys: set[tuple] = set()
    for start in range(0, len(values), 3_000):  # polls
        batch = decode_batch(values[start : start + 3_000]).batch
        batch = batch.with_session(tracker.classify_batch(batch).sessions)
        kept = batch.take(dedup.check(batch))
        dedup.record(dedup.stage())
        stored += len(kept)
        columns = (kept.symbol.tolist(), kept.session.tolist(), kept.seq.tolist())
        keys |= set(zip(*columns, strict=True))
    assert stored == len(keys) == truth["unique_records"]
    assert tracker.summary()["reset"] == truth["resets"]
    got = [(g.exchange, g.symbol, g.first, g.last) for g in tracker.open_gaps()]
    want = [(g["exchange"], g["symbol"], g["first"], g["last"]) for g in truth["gaps"]]
    assert got == want


def test_a_key_resets_only_after_enough_records_of_its_session() -> None:
    values, injector = published(FaultSpec(reset=0.5), seed=4, records=3 * RESET_AFTER)
    batch = decode_batch(values).batch
    assert injector.truth.resets >= 1
    for symbol in set(batch.symbol.tolist()):
        seqs = batch.seq[batch.symbol == symbol]
        restarts = np.flatnonzero(seqs[1:] < seqs[:-1]) + 1
        lengths = np.diff(np.concatenate([[0], restarts]))
        assert (lengths >= RESET_AFTER).all() and (seqs[restarts] == 1).all()


def test_reset_is_a_fault_kind() -> None:
    assert FaultSpec.parse("reset=0.001").active
    with pytest.raises(ConfigError):
        FaultSpec.parse("restart=0.1")
