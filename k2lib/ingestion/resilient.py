"""The full ingest stages: degradation, load shedding, sequence tracking and dedup.

Per poll, in order:

1. signals (lag from fetch responses, last batch latency, this process's RSS, breaker
   states) -> the degradation manager -> this level's row of `LEVEL_ACTIONS`;
2. records of tiers the level sheds go to the deferred spill (durable before their
   offsets are committed, so shedding defers and never loses);
3. the sequence tracker labels the rest (one Redis round trip), then the deduplicator
   drops duplicates (Bloom, confirmed in Redis on a maybe);
4. if Redis fails, the records are deferred too: nothing is stored unchecked;
5. when the level allows, spilled records are backfilled through steps 3-4.

Spill files a commit covers are named in its snapshot (`k2.spill.tokens`) and acked after
it; a crash in between is healed on start by acking what the last snapshot names.

The Redis state (dedup keys, sequence state) is a cache of the table (`state.py`): synced
from it at start and after every rewind, verified before every commit, and rebuilt from it
when Redis lost it. Calls to Redis and the broker go through their breakers (`health.py`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from prometheus_client import CollectorRegistry

from k2lib.config import K2Settings
from k2lib.ingestion.health import FAILED, SignalReader, guarded
from k2lib.ingestion.stages import CommitTicket, DedupStage, PollPlan, SequenceStage, Stages
from k2lib.ingestion.state import Ledger, TableStateSync
from k2lib.resilience import (
    CircuitBreaker,
    DeferredSpill,
    DegradationConfig,
    DegradationManager,
    LoadShedder,
    spill_directory,
)
from k2lib.storage.table import held_mask
from k2lib.storage.writer import CommitResult
from k2lib.wire.schema import UNNAMED_SESSION, TradeBatch

if TYPE_CHECKING:
    from pyiceberg.table import Table

__all__ = ["ResilientStages"]

log = logging.getLogger("k2.ingest")
T = TypeVar("T")

SPILL_TOKENS_PROPERTY = "k2.spill.tokens"
BACKFILL_ROWS_PER_POLL = 100_000
RECHECK_FRACTION = 0.5


class ResilientStages(Stages):
    def __init__(
        self,
        *,
        manager: DegradationManager,
        shedder: LoadShedder,
        spill: DeferredSpill,
        breakers: dict[str, CircuitBreaker],
        tracker: SequenceStage | None = None,
        dedup: DedupStage | None = None,
        ledger: Ledger | None = None,
        signals: SignalReader | None = None,
    ) -> None:
        self.manager = manager
        self.shedder = shedder
        self.spill = spill
        self.breakers = breakers
        self.tracker = tracker
        self.dedup = dedup
        self.ledger = ledger
        self.signals = signals or SignalReader(breakers=breakers)
        self.sync: TableStateSync | None = None
        self._table: Table | None = None
        self._in_commit: list[tuple[str, np.ndarray]] = []  # spill tokens + their tiers
        self._backfilling: list[tuple[str, np.ndarray]] = []  # drained, not yet committed
        self._dropped = 0
        self.deferred_for_redis = 0
        self.rechecked = 0

    @classmethod
    def from_settings(
        cls,
        settings: K2Settings,
        registry: CollectorRegistry,
        *,
        degradation: DegradationConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> ResilientStages:
        from k2lib.ingestion.scalability import (
            broker_probe,
            build_dedup,
            build_ledger,
            build_tracker,
            redis_probe,
            status_publisher,
        )

        breakers = {
            name: CircuitBreaker(name, clock=clock, registry=registry)
            for name in ("redis", "iceberg_commit", "broker")
        }
        spill = DeferredSpill(spill_directory(settings), registry=registry)
        return cls(
            manager=DegradationManager(config=degradation, clock=clock, registry=registry),
            shedder=LoadShedder(registry=registry, pending_records=spill.pending_rows()),
            spill=spill,
            breakers=breakers,
            tracker=build_tracker(settings, registry),
            dedup=build_dedup(settings, registry),
            ledger=build_ledger(settings),
            signals=SignalReader(
                breakers=breakers,
                status_sink=status_publisher(settings),
                redis_probe=redis_probe(settings),
                broker_probe=broker_probe(settings),
                clock=clock,
            ),
        )

    # -- hooks ----------------------------------------------------------------------------

    def start(self, table: Table, partitions: Collection[int]) -> None:
        self._table = table
        self._heal_spill(table)
        if self.ledger is not None:
            holders = [h for h in (self.dedup, self.tracker) if h is not None]
            self.sync = TableStateSync(self.ledger, table, partitions=partitions, holders=holders)
            self.sync.ensure()

    def before_poll(self, lag: int, consumed: int) -> PollPlan:
        signals = self.signals.read(lag, consumed)
        self.manager.update(signals)
        self.signals.publish(self.manager.status, signals)
        actions = self.manager.actions
        backfill: tuple[TradeBatch, ...] = ()
        if actions.backfill_deferred and self.spill.pending_rows():
            backfill = self._backfill()
        return PollPlan(
            consume=actions.consume,
            batch_size_factor=actions.batch_size_factor,
            commit_interval_factor=actions.commit_interval_factor,
            backfill=backfill,
        )

    def process(self, batch: TradeBatch) -> TradeBatch:
        if not len(batch):
            return batch
        tiers = self.shedder.tiers_of(batch.symbol, batch.exchange)
        # Sequence first, shed or not: the tracker sees the feed in arrival order, so a
        # deferred range backfilled later is never reported as a gap meanwhile. It also
        # names each record's session, part of the key the deduplicator checks.
        classified = self._classify(batch, count=True)
        if classified is None:
            # Redis unusable: defer rather than store unchecked, its session not yet named.
            self._defer(batch.with_session(np.full(len(batch), UNNAMED_SESSION)), tiers)
            self.deferred_for_redis += len(batch)
            return TradeBatch.empty()
        batch = classified
        keep, shed = self.shedder.split_tiers(tiers, self.manager.level)
        if shed.any():
            self._defer(batch.take(shed), tiers[shed])
            batch, tiers = batch.take(keep), tiers[keep]
        checked = self._dedup_batch(batch)
        if checked is None:
            self._defer(batch, tiers)
            self.deferred_for_redis += len(batch)
            return TradeBatch.empty()
        return checked

    def take_dropped(self) -> int:
        dropped, self._dropped = self._dropped, 0
        return dropped

    def guard_commit(self, commit: Callable[[], T]) -> T:
        return self.breakers["iceberg_commit"].call(commit)

    def verify_state(self) -> bool | None:
        sync = self.sync
        if sync is None:
            return True
        verdict = self._redis(sync.verify)
        return None if verdict is FAILED else bool(verdict)

    def prepare_commit(self) -> CommitTicket:
        spilled = self._in_commit + self._backfilling
        self._in_commit, self._backfilling = [], []
        staged = self.dedup.stage() if self.dedup is not None else None
        props = {SPILL_TOKENS_PROPERTY: json.dumps([t for t, _ in spilled])} if spilled else {}
        return CommitTicket(properties=props, state=(spilled, staged))

    def after_commit(self, ticket: CommitTicket, result: CommitResult) -> None:
        spilled, staged = ticket.state
        dedup, sync = self.dedup, self.sync
        sequence_number = result.offsets.sequence_number

        def record() -> None:
            if dedup is not None:
                dedup.record(staged)
            if sync is not None:
                sync.committed(sequence_number)

        # Keys go to Redis only once their rows are durable. If Redis is down now, they stay
        # staged in the process and are retried with the next commit; the mark is not
        # raised, so a crash first is repaired from the table on the next start.
        if self._redis(record) is FAILED and dedup is not None:
            dedup.restage(staged)
        for token, tiers in spilled:
            self.spill.ack(token)
            self.shedder.record_backfilled(tiers)

    def commit_failed(self, ticket: CommitTicket) -> None:
        spilled, staged = ticket.state
        self._in_commit = spilled + self._in_commit
        if self.dedup is not None:
            self.dedup.restage(staged)

    def discard(self) -> None:
        if self.dedup is not None:
            self.dedup.discard()
        for token, _ in self._in_commit + self._backfilling:
            self.spill.release(token)
        self._in_commit, self._backfilling = [], []

    def resync(self) -> None:
        if self.sync is not None:
            self.sync.ensure(seen=self.sync.marks)

    def adopt(self, partitions: Collection[int]) -> None:
        sync = self.sync
        if sync is None:
            return
        new = set(partitions) - set(sync.partitions)
        # Another member recorded these partitions' keys: load what Redis holds into the
        # Bloom filter, and replay from the table what was committed after that.
        marks = sync.ledger.read().marks
        if self.dedup is not None and new:
            self.dedup.warm()
        sync.partitions = sorted(set(sync.partitions) | new)
        seen = {**sync.marks, **{p: marks.get(p, 0) for p in new}}
        sync.ensure(seen=seen)

    def release(self, partitions: Collection[int]) -> None:
        if self.sync is not None:
            gone = set(partitions)
            self.sync.partitions = [p for p in self.sync.partitions if p not in gone]
            self.sync.marks = {p: m for p, m in self.sync.marks.items() if p not in gone}

    def after_step(self, seconds: float) -> None:
        self.signals.batch_took(seconds)

    def busy(self) -> bool:
        return self.spill.pending_rows() > 0 and self.manager.actions.backfill_deferred

    def skip_optional_work(self) -> bool:
        return self.manager.actions.skip_optional_work

    def summary(self) -> dict[str, Any]:
        shed = self.shedder.counts()
        out: dict[str, Any] = {
            "shed": sum(shed["shed"].values()),
            "deferred": sum(shed["deferred"].values()),
            "backfilled": sum(shed["backfilled"].values()),
            "pending_deferred": self.spill.pending_rows(),
            "deferred_redis_down": self.deferred_for_redis,
            "backfill_rechecked_in_table": self.rechecked,
            "shedding_by_tier": shed,
            "degradation": self.manager.summary(),
        }
        if self.sync is not None:
            out["state"] = {
                "rebuilds": self.sync.rebuilds,
                "replayed_rows": self.sync.replayed_rows,
            }
        if self.dedup is not None:
            dedup = self.dedup.summary()
            out["duplicates"] = dedup.get("duplicates", 0)
            out["dedup"] = dedup
        if self.tracker is not None:
            seq = self.tracker.summary()
            out["gaps"] = seq.get("gaps", 0)
            out["sequence"] = seq
        return out

    def remaining(self) -> dict[str, Any]:
        pending = self.spill.pending_rows()
        if not pending:
            return {}
        level = self.manager.level
        why = (
            f"level {level.name} does not backfill deferred records"
            if not self.manager.actions.backfill_deferred
            else "the backfill did not finish before the run ended"
        )
        return {
            "deferred_rows": pending,
            "spill": str(self.spill.directory),
            "reason": why + "; they are durable in the spill, and the next run backfills them",
        }

    # -- internals ------------------------------------------------------------------------

    def _classify(self, batch: TradeBatch, *, count: bool) -> TradeBatch | None:
        """Sequence-label `batch` (`count`: as a first sighting, and -> the batch in the
        sessions the tracker gave it; otherwise only bring the state up to it, the batch
        keeping the sessions it was given then). None when Redis cannot be used right now."""
        tracker = self.tracker
        if tracker is None:
            return batch
        if not count:
            return None if self._redis(lambda: tracker.replay_committed(batch)) is FAILED else batch
        result = self._redis(lambda: tracker.classify_batch(batch))
        return None if result is FAILED else batch.with_session(result.sessions)

    def _dedup_batch(self, batch: TradeBatch) -> TradeBatch | None:
        """Drop duplicates from `batch`; None when Redis cannot be used right now."""
        if self.dedup is None or not len(batch):
            return batch
        dedup = self.dedup
        keep = self._redis(lambda: dedup.check(batch))
        if keep is FAILED:
            return None
        assert isinstance(keep, np.ndarray)
        self._dropped += len(batch) - int(np.count_nonzero(keep))
        return batch.take(keep)

    def _redis(self, call: Callable[[], Any]) -> Any:
        return guarded(self.breakers, "redis", call)

    def _defer(self, batch: TradeBatch, tiers: np.ndarray) -> None:
        self.spill.append(batch.to_arrow())
        self.shedder.record_deferred(tiers)

    def _backfill(self) -> tuple[TradeBatch, ...]:
        out: list[TradeBatch] = []
        for token, table in self.spill.drain(BACKFILL_ROWS_PER_POLL):
            batch = TradeBatch.from_arrow(table)  # keeps its Kafka partition and offset
            # Classified on arrival (replaying it is harmless), unless Redis was down then:
            # such a file's records are classified now, and get their sessions.
            first_sighting = bool(np.any(batch.session == UNNAMED_SESSION))
            named = self._classify(batch, count=first_sighting)
            checked = None if named is None else self._dedup_batch(named)
            if checked is None:
                self.spill.release(token)
                break
            if self.spill.age_s(token) > self._recheck_after_s():
                checked = self._drop_stored(checked)
            out.append(checked)
            self._backfilling.append((token, self.shedder.tiers_of(batch.symbol, batch.exchange)))
        return tuple(out)

    def _recheck_after_s(self) -> float:
        """Deferred longer than this, a record's original may have left the dedup horizon
        (Redis windows expire): its key is checked against the table itself."""
        config = getattr(self.dedup, "config", None)
        if config is None:
            return float("inf")
        return RECHECK_FRACTION * (config.generations - 1) * config.window_s

    def _drop_stored(self, batch: TradeBatch) -> TradeBatch:
        if self._table is None or not len(batch):
            return batch
        held = held_mask(
            self._table,
            [e.decode() for e in batch.exchange.tolist()],
            [s.decode() for s in batch.symbol.tolist()],
            batch.seq.tolist(),
            batch.session.tolist(),
        )
        self._dropped += int(np.count_nonzero(held))
        self.rechecked += len(batch)
        return batch.take(~held)

    def _heal_spill(self, table: Table) -> None:
        """Ack spill files that the last snapshot committed before a crash could ack them."""
        snap = table.current_snapshot()
        props = snap.summary.additional_properties if snap and snap.summary else {}
        for token in json.loads(props.get(SPILL_TOKENS_PROPERTY, "[]")):
            self.spill.ack(token)
