"""The hybrid engine without services: the seam and merge as pure functions, then the whole
engine over a SQLite-backed Iceberg catalog and an in-process Kafka twin."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.catalog.sql import SqlCatalog

from k2lib.config import K2Settings
from k2lib.errors import InconsistentSeamError, QueryError, ServiceError
from k2lib.query import HybridQueryEngine, KafkaTail, TailConfig, TailResult
from k2lib.query.merge import (
    OFFSET_BEGINNING,
    behind_partitions,
    drop_ingested,
    filter_batch,
    filter_rows,
    merge_sides,
    seam_offsets,
    tag_source,
    to_records,
)
from k2lib.resilience.spill import DeferredSpill, spill_directory
from k2lib.storage.table import ensure_table
from k2lib.testing import append_with_offsets, synthetic_trades
from k2lib.wire.partitioner import partition_for
from k2lib.wire.schema import TradeBatch
from tests.helpers import symbol_trades

pytestmark = [pytest.mark.unit, pytest.mark.hybrid, pytest.mark.phase2]

T0 = 1_714_564_800_000_000
MIN = 60_000_000
PARTITIONS = 4
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def stream(n: int, *, seed: int = 0, span_us: int = 30 * MIN) -> TradeBatch:
    """`n` trades as Kafka would hold them: keyed partition, offsets counting per partition."""
    return on_topic(synthetic_trades(n, start_us=T0, span_us=span_us, symbols=SYMBOLS, seed=seed))


def on_topic(batch: TradeBatch) -> TradeBatch:
    """`batch` published, in order, to a new topic: keyed partition, offsets from 0."""
    n = len(batch)
    keys = batch.kafka_keys()
    parts = np.array([partition_for(k, PARTITIONS) for k in keys], np.int32)
    offsets = np.zeros(n, np.int64)
    for p in range(PARTITIONS):
        rows = np.flatnonzero(parts == p)
        offsets[rows] = np.arange(rows.size)
    return batch.with_kafka(parts, offsets)


def brute_force(batch: TradeBatch, symbols: Iterable[str], start: int, end: int) -> list[tuple]:
    keep = filter_batch(batch, list(symbols), None, start, end)
    rows = batch.take(keep)
    return sorted(zip(rows.exch_ts.tolist(), rows.seq.tolist(), rows.symbol.tolist(), strict=True))


def keys_of(table: pa.Table) -> list[tuple]:
    return list(
        zip(
            table.column("exch_ts").cast(pa.int64()).to_pylist(),
            table.column("seq").to_pylist(),
            [s.encode() for s in table.column("symbol").to_pylist()],
            strict=True,
        )
    )


def split_answer(
    batch: TradeBatch,
    seam: Mapping[int, int],
    kafka_from: Mapping[int, int],
    symbols: list[str],
    start: int,
    end: int,
    limit: int | None = None,
) -> Any:
    """What the engine does, with Iceberg holding offsets < seam and Kafka read from
    kafka_from (== seam normally; earlier to simulate redelivered records)."""
    seam_arr = np.array([seam[p] for p in range(PARTITIONS)])
    from_arr = np.array([kafka_from[p] for p in range(PARTITIONS)])
    ice = batch.take(batch.offset < seam_arr[batch.partition])
    kafka = batch.take(batch.offset >= from_arr[batch.partition])
    ice_rows = filter_rows(tag_source(ice.to_arrow(), "iceberg"), symbols, None, start, end)
    kafka = kafka.take(filter_batch(kafka, symbols, None, start, end))
    return merge_sides(ice_rows, tag_source(kafka.to_arrow(), "kafka"), limit)


# -- seam arithmetic ---------------------------------------------------------------------


def test_seam_starts_each_partition_at_the_recorded_next_offset() -> None:
    assert seam_offsets({0: 10, 1: 0, 3: 7}, [0, 1, 2, 3]) == {
        0: 10,
        1: 0,
        2: OFFSET_BEGINNING,
        3: 7,
    }
    assert seam_offsets({0: 10, 1: 5}, [1]) == {1: 5}


def test_behind_only_when_the_watermark_is_below_the_seam() -> None:
    start = {0: 10, 1: 5, 2: OFFSET_BEGINNING, 3: 0}
    assert behind_partitions(start, {0: 10, 1: 4, 2: 0, 3: 0}) == {1: (5, 4)}
    assert behind_partitions(start, {0: 11, 1: 5}) == {}


# -- merge -----------------------------------------------------------------------------


def test_dedup_keeps_the_iceberg_copy_and_counts_the_rest() -> None:
    batch = stream(200)
    ice = tag_source(batch.take(np.arange(0, 150)).to_arrow(), "iceberg")
    kafka = tag_source(batch.take(np.arange(100, 200)).to_arrow(), "kafka")
    out = merge_sides(ice, kafka)
    assert out.duplicates_removed == 50
    assert out.rows.num_rows == 200
    sources = out.rows.column("source").to_pylist()
    assert sources.count("iceberg") == 150 and sources.count("kafka") == 50


def test_a_reused_seq_of_a_later_session_is_not_a_repeat() -> None:
    def rows(seqs: list[int], ts: list[int], session: int) -> TradeBatch:
        return symbol_trades(seqs, ts).with_session(np.full(len(seqs), session))

    later = T0 + 10 * MIN
    stored = rows([1, 2], [T0, T0 + 1], 0).to_arrow()
    # The tail holds the new session (its session not yet named) and a copy of seq 2.
    tail = rows([1, 2, 2], [later, later + 1, T0 + 1], 0).to_arrow()
    out = merge_sides(tag_source(stored, "iceberg"), tag_source(tail, "kafka"))
    assert out.duplicates_removed == 1
    assert out.rows.column("seq").to_pylist() == [1, 2, 1, 2]
    assert out.rows.column("source").to_pylist() == ["iceberg"] * 2 + ["kafka"] * 2


def test_rows_written_before_the_session_column_merge() -> None:
    old = stream(10).to_arrow().drop_columns(["session"])
    out = merge_sides(tag_source(old, "iceberg"), tag_source(stream(10).to_arrow(), "kafka"))
    assert out.rows.num_rows == 10 and out.duplicates_removed == 10
    assert out.rows.column("session").null_count == 10  # the stored copies win


def test_order_is_exch_ts_then_seq() -> None:
    same_ts = TradeBatch.from_columns(
        exchange=["binance"] * 4,
        symbol=["BTCUSDT", "BTCUSDT", "ETHUSDT", "BTCUSDT"],
        seq=[3, 1, 2, 9],
        exch_ts=[T0 + 5, T0 + 5, T0 + 5, T0],
        recv_ts=[T0 + 9] * 4,
        price=[1] * 4,
        qty=[1] * 4,
    )
    out = merge_sides(
        tag_source(same_ts.to_arrow(), "kafka"),
        tag_source(TradeBatch.empty().to_arrow(), "iceberg"),
    )
    assert out.rows.column("seq").to_pylist() == [9, 1, 2, 3]


def test_limit_keeps_the_newest_rows_in_time_order() -> None:
    at = {p: 60 for p in range(4)}
    window = (stream(500), at, dict(at), list(SYMBOLS), T0, T0 + 60 * MIN)
    full = split_answer(*window)
    top = split_answer(*window, limit=7)
    assert keys_of(top.rows) == keys_of(full.rows)[-7:]
    assert top.truncated == 493
    ts = top.rows.column("exch_ts").cast(pa.int64()).to_pylist()
    assert ts == sorted(ts)


def test_mixed_string_and_timestamp_types_union() -> None:
    # pyiceberg may hand back `string` and `timestamp[us, tz=+00:00]`: both must merge.
    arrow = stream(20).to_arrow()
    loose = arrow.cast(
        pa.schema(
            [
                f.with_type(pa.string())
                if pa.types.is_large_string(f.type)
                else f.with_type(pa.timestamp("us", tz="+00:00"))
                if pa.types.is_timestamp(f.type)
                else f
                for f in arrow.schema
            ]
        )
    )
    out = merge_sides(tag_source(loose, "iceberg"), tag_source(arrow, "kafka"))
    assert out.rows.num_rows == 20 and out.duplicates_removed == 20


def test_records_are_exact_strings() -> None:
    batch = TradeBatch.from_columns(
        exchange=["binance"],
        symbol=["BTCUSDT"],
        seq=[1],
        exch_ts=[T0 + 1],
        recv_ts=[T0 + 2],
        price=[6_051_201_000_000],
        qty=[1],
        side=[1],
        partition=[2],
        offset=[41],
    )
    (row,) = to_records(tag_source(batch.to_arrow(), "kafka"))
    assert row == {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "seq": 1,
        "exch_ts": "2024-05-01T12:00:00.000001Z",
        "recv_ts": "2024-05-01T12:00:00.000002Z",
        "price": "60512.01000000",
        "qty": "0.00000001",
        "side": "buy",
        "source": "kafka",
        "kafka_partition": 2,
        "kafka_offset": 41,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 400),
    seed=st.integers(0, 10_000),
    cuts=st.lists(st.floats(0, 1), min_size=PARTITIONS, max_size=PARTITIONS),
    overlap=st.lists(st.integers(0, 30), min_size=PARTITIONS, max_size=PARTITIONS),
    window=st.tuples(st.integers(0, 40), st.integers(1, 40)),
    symbols=st.sets(st.sampled_from(SYMBOLS), min_size=1),
    limit=st.none() | st.integers(1, 50),
)
def test_any_split_gives_the_brute_force_answer(
    n: int,
    seed: int,
    cuts: list[float],
    overlap: list[int],
    window: tuple[int, int],
    symbols: set[str],
    limit: int | None,
) -> None:
    batch = stream(n, seed=seed)
    sizes = [int((batch.partition == p).sum()) for p in range(PARTITIONS)]
    seam = {p: int(cuts[p] * sizes[p]) for p in range(PARTITIONS)}
    # Kafka re-reading records Iceberg already has must not double-count them either.
    kafka_from = {p: max(0, seam[p] - overlap[p]) for p in range(PARTITIONS)}
    start = T0 + window[0] * MIN
    end = start + window[1] * MIN
    out = split_answer(batch, seam, kafka_from, sorted(symbols), start, end, limit)
    expected = brute_force(batch, symbols, start, end)
    if limit is not None:
        expected = expected[-limit:] if expected else []
    assert keys_of(out.rows) == expected


# -- the engine, with an in-process Kafka twin -----------------------------------------


class TwinTail:
    """KafkaTail's contract over an in-memory log; records which partitions were read."""

    def __init__(
        self,
        log: TradeBatch,
        *,
        fail: bool = False,
        hw: dict[int, int] | None = None,
        topic_uuid: str | None = None,
    ):
        self.log, self.fail, self.topic_uuid = log, fail, topic_uuid
        self.hw = hw or {p: int((log.partition == p).sum()) for p in range(PARTITIONS)}
        self.config = TailConfig()
        self.reads: list[dict[int, int]] = []

    def partition_count(self, topic: str) -> int:
        return PARTITIONS

    def topic_id(self, topic: str) -> str | None:
        return self.topic_uuid

    def partitions_for_keys(self, topic: str, keys: list[bytes]) -> list[int]:
        return sorted({partition_for(k, PARTITIONS) for k in keys})

    def read(
        self,
        topic: str,
        start_offsets: Mapping[int, int],
        *,
        partitions: Any = None,
        predicate: Any = None,
    ) -> TailResult:
        if self.fail:
            raise ServiceError("broker unreachable")
        self.reads.append(dict(start_offsets))
        start = {p: max(o, 0) for p, o in start_offsets.items()}
        behind = {p: (o, self.hw[p]) for p, o in start.items() if self.hw[p] < o}
        ok = [p for p in start if p not in behind]
        lo = np.array([start.get(p, 1 << 62) for p in range(PARTITIONS)])
        rows = self.log.take(
            np.isin(self.log.partition, ok)
            & (self.log.offset >= lo[self.log.partition])
            & (
                self.log.offset
                < np.array([self.hw[p] for p in range(PARTITIONS)])[self.log.partition]
            )
        )
        if predicate is not None:
            rows = rows.take(predicate(rows))
        return TailResult(
            batch=rows,
            rows=rows.to_arrow(),
            start_offsets=dict(start_offsets),
            end_offsets={p: self.hw[p] for p in ok},
            behind=behind,
            incomplete=[],
            records_read=len(rows),
        )


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return SqlCatalog("unit", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}")


def engine_for(
    catalog: SqlCatalog,
    log: TradeBatch,
    seam: dict[int, int] | None,
    shed: np.ndarray | None = None,
    *,
    recorded_id: str | None = None,
    ingested_log: TradeBatch | None = None,
    **tail_kw: Any,
) -> tuple[HybridQueryEngine, TwinTail]:
    """`shed`: rows consumed (behind the seam) but deferred to the spill, not the table.
    `ingested_log`: what the topic held when ingest committed `seam` (default: `log`);
    `recorded_id`: the topic id that commit recorded."""
    home = Path(catalog.properties["warehouse"].removeprefix("file://"))
    settings = K2Settings(home=home, topic="t", table="unit.trades")
    table = ensure_table(catalog, settings.table)
    if seam is not None:
        old = log if ingested_log is None else ingested_log
        lim = np.array([seam[p] for p in range(PARTITIONS)])
        ingested = old.offset < lim[old.partition]
        if shed is not None:
            DeferredSpill(spill_directory(settings)).append(old.take(ingested & shed).to_arrow())
            ingested &= ~shed
        append_with_offsets(table, old.take(ingested), "t", seam, recorded_id)
    tail = TwinTail(log, **tail_kw)
    engine = HybridQueryEngine(
        settings, catalog=catalog, tail=cast(KafkaTail, tail), now=lambda: T0 + 40 * MIN
    )
    return engine, tail


def test_engine_answers_across_the_seam_with_provenance(catalog: SqlCatalog) -> None:
    log = stream(600)
    seam = {0: 50, 1: 10, 2: 0, 3: 80}
    engine, tail = engine_for(catalog, log, seam)
    with engine:
        result = engine.query("BTCUSDT", T0, T0 + 31 * MIN, exchange="binance")
    prov = result.provenance
    assert keys_of(result.rows) == brute_force(log, ["BTCUSDT"], T0, T0 + 31 * MIN)
    p = partition_for(b"binance:BTCUSDT", PARTITIONS)
    assert tail.reads == [{p: seam[p]}]  # one partition, from the recorded offset
    assert prov.mode == "offset" and prov.seam == {p: seam[p]} and not prov.partial
    assert prov.snapshot_id is not None and prov.high_watermarks == {p: tail.hw[p]}
    assert sum(prov.rows_by_source.values()) == len(result)
    assert prov.rows_by_source["iceberg"] > 0 and prov.rows_by_source["kafka"] > 0
    assert prov.duplicates_removed == 0
    d = prov.as_dict()
    assert set(d["freshness"]) >= {
        "iceberg_newest_exch_ts",
        "kafka_newest_exch_ts",
        "snapshot_committed_at",
    }
    assert {"iceberg", "kafka", "total"} <= set(d["latency_ms"])


def test_engine_with_nothing_ingested_reads_kafka_from_the_start(catalog: SqlCatalog) -> None:
    log = stream(300)
    engine, tail = engine_for(catalog, log, None)
    with engine:
        result = engine.query(list(SYMBOLS), T0, T0 + 31 * MIN)
    assert keys_of(result.rows) == brute_force(log, SYMBOLS, T0, T0 + 31 * MIN)
    assert tail.reads == [dict.fromkeys(range(PARTITIONS), OFFSET_BEGINNING)]
    assert result.provenance.rows_by_source["iceberg"] == 0


def test_broker_behind_the_snapshot_is_an_error_or_flagged_partial(catalog: SqlCatalog) -> None:
    log = stream(400)
    seam = {0: 50, 1: 50, 2: 50, 3: 50}
    engine, _ = engine_for(catalog, log, seam, hw={0: 20, 1: 200, 2: 200, 3: 200})
    with engine:
        with pytest.raises(InconsistentSeamError, match="partition 0"):
            engine.query(list(SYMBOLS), T0, T0 + 31 * MIN)
        result = engine.query(list(SYMBOLS), T0, T0 + 31 * MIN, allow_partial=True)
    assert result.provenance.partial
    assert any("behind" in w for w in result.provenance.warnings)


def test_a_failing_side_is_never_silent(catalog: SqlCatalog) -> None:
    log = stream(200)
    engine, _ = engine_for(catalog, log, {p: 10 for p in range(PARTITIONS)}, fail=True)
    with engine:
        with pytest.raises(ServiceError, match="kafka side"):
            engine.query("BTCUSDT", T0, T0 + 31 * MIN)
        result = engine.query("BTCUSDT", T0, T0 + 31 * MIN, allow_partial=True)
        historical = engine.query("BTCUSDT", T0, T0 + 31 * MIN, source="historical")
    assert result.provenance.partial and "kafka side failed" in result.provenance.warnings[0]
    assert result.provenance.rows_by_source["kafka"] == 0
    assert not historical.provenance.partial  # Kafka is not needed for history


def test_time_overlap_mode_for_tables_without_offsets(catalog: SqlCatalog) -> None:
    log = stream(300)
    settings = K2Settings(topic="t", table="unit.trades")
    table = ensure_table(catalog, settings.table)
    table.append(log.take(log.offset < 40).to_arrow())  # no offsets recorded
    tail = TwinTail(log)
    with HybridQueryEngine(settings, catalog=catalog, tail=cast(KafkaTail, tail)) as engine:
        result = engine.query(list(SYMBOLS), T0, T0 + 31 * MIN)
    prov = result.provenance
    assert prov.mode == "time-overlap" and prov.overlap_buffer_s == 120
    assert prov.duplicates_removed > 0 and "time-overlap" in prov.warnings[0]
    assert keys_of(result.rows) == brute_force(log, SYMBOLS, T0, T0 + 31 * MIN)


def test_sources_and_bad_requests(catalog: SqlCatalog) -> None:
    log = stream(300)
    engine, tail = engine_for(catalog, log, {p: 30 for p in range(PARTITIONS)})
    with engine:
        hist = engine.query("ETHUSDT", T0, T0 + 31 * MIN, source="historical")
        real = engine.query("ETHUSDT", T0, T0 + 31 * MIN, source="realtime")
        for bad in ({"source": "both"}, {"limit": 0}, {"exchange": "bad name"}):
            with pytest.raises(QueryError):
                engine.query("ETHUSDT", T0, T0 + MIN, **bad)
        with pytest.raises(QueryError, match="before"):
            engine.query("ETHUSDT", T0 + MIN, T0)
    assert hist.provenance.rows_by_source["kafka"] == 0 and hist.provenance.mode == "historical"
    assert real.provenance.rows_by_source["iceberg"] == 0
    assert keys_of(real.rows) == brute_force(log, ["ETHUSDT"], T0, T0 + 31 * MIN)
    assert tail.reads[-1] == dict.fromkeys(range(PARTITIONS), OFFSET_BEGINNING)


def test_records_shed_to_the_spill_are_still_answered(catalog: SqlCatalog) -> None:
    log = stream(600)
    shed = log.symbol == b"SOLUSDT"  # a tier-3 symbol deferred under GRACEFUL
    seam = {p: min(100, int((log.partition == p).sum())) for p in range(PARTITIONS)}
    engine, _ = engine_for(catalog, log, seam, shed=shed)
    with engine:
        result = engine.query(list(SYMBOLS), T0, T0 + 31 * MIN)
        historical = engine.query(list(SYMBOLS), T0, T0 + 31 * MIN, source="historical")
    assert keys_of(result.rows) == brute_force(log, SYMBOLS, T0, T0 + 31 * MIN)
    prov = result.provenance
    assert prov.rows_by_source["spill"] > 0 and prov.deferred_files == 1
    assert historical.provenance.rows_by_source["spill"] == 0
    # Backfilled but not yet acked: the rows are in both; the committed copy wins.
    table = engine.reader.pin().table
    lim = np.array([seam[p] for p in range(PARTITIONS)])
    spilled = log.take(shed & (log.offset < lim[log.partition]))
    append_with_offsets(table, spilled, "t", seam)
    with HybridQueryEngine(engine.settings, catalog=catalog, tail=engine.tail) as again:
        both = again.query(list(SYMBOLS), T0, T0 + 31 * MIN)
    assert keys_of(both.rows) == keys_of(result.rows)
    assert both.provenance.rows_by_source["spill"] == 0
    assert both.provenance.duplicates_removed == len(spilled)


def test_time_overlap_cutoff_is_per_symbol(catalog: SqlCatalog) -> None:
    # Ingest is far behind on ETHUSDT only. One cutoff from BTCUSDT's newest row would drop
    # ETHUSDT's Kafka rows that the table does not hold.
    log = stream(900)
    settings = K2Settings(topic="t", table="unit.trades")
    table = ensure_table(catalog, settings.table)
    eth = log.symbol == b"ETHUSDT"
    lagging = (eth & (log.exch_ts < T0 + 5 * MIN)) | (~eth & (log.exch_ts < T0 + 25 * MIN))
    table.append(log.take(lagging).to_arrow())  # no offsets recorded
    tail = TwinTail(log)
    with HybridQueryEngine(settings, catalog=catalog, tail=cast(KafkaTail, tail)) as engine:
        result = engine.query(list(SYMBOLS), T0, T0 + 31 * MIN)
    prov = result.provenance
    assert prov.mode == "time-overlap" and "per symbol" in prov.warnings[0]
    assert keys_of(result.rows) == brute_force(log, SYMBOLS, T0, T0 + 31 * MIN)
    rows = result.rows
    kafka_eth = rows.filter(
        pc.and_(pc.equal(rows["source"], "kafka"), pc.equal(rows["symbol"], "ETHUSDT"))
    )
    assert pc.min(kafka_eth["exch_ts"]).cast(pa.int64()).as_py() < T0 + 6 * MIN


def test_drop_ingested_cuts_each_key_at_its_own_newest_row() -> None:
    def rows(keys: list[tuple[str, str, int, int]]) -> pa.Table:
        exchange, symbol, seq, ts = (list(c) for c in zip(*keys, strict=True))
        batch = TradeBatch.from_columns(
            exchange=exchange,
            symbol=symbol,
            seq=seq,
            exch_ts=[T0 + t for t in ts],
            recv_ts=[T0 + 200] * len(keys),
            price=[1] * len(keys),
            qty=[1] * len(keys),
        )
        return tag_source(batch.to_arrow(), "kafka")

    kafka = rows(
        [
            ("binance", "BTCUSDT", 1, 10),
            ("binance", "BTCUSDT", 2, 95),
            ("binance", "ETHUSDT", 1, 10),
            ("kraken", "BTCUSDT", 1, 10),
            ("kraken", "BTCUSDT", 2, 50),
        ]
    )
    iceberg = rows([("binance", "BTCUSDT", 0, 100), ("kraken", "BTCUSDT", 0, 40)])
    kept = drop_ingested(kafka, iceberg, buffer_us=20)
    # binance:BTCUSDT is cut at T0 + 80, kraken:BTCUSDT at T0 + 20; ETHUSDT has no
    # Iceberg rows, so it keeps all of its own.
    got = zip(*(kept[c].to_pylist() for c in ("exchange", "symbol", "seq")), strict=True)
    assert sorted(got) == [
        ("binance", "BTCUSDT", 2),
        ("binance", "ETHUSDT", 1),
        ("kraken", "BTCUSDT", 2),
    ]
    assert drop_ingested(kafka, iceberg.slice(0, 0), buffer_us=20).num_rows == 5


def recreated_topic(resend: bool) -> tuple[TradeBatch, TradeBatch, TradeBatch]:
    """(old topic, new topic, every trade): the broker was wiped after ingest committed
    part of the old topic; the new topic holds the feed's later trades, or (`resend`) the
    whole feed again, and outgrows the old seam."""
    feed = synthetic_trades(1200, start_us=T0, span_us=30 * MIN, symbols=SYMBOLS, seed=4)
    old = on_topic(feed.take(np.arange(400)))
    new = on_topic(feed if resend else feed.take(np.arange(400, 1200)))
    return old, new, on_topic(feed)


@pytest.mark.parametrize("resend", [False, True])
def test_a_recreated_topic_is_read_from_its_beginning(catalog: SqlCatalog, resend: bool) -> None:
    old, new, feed = recreated_topic(resend)
    seam = {p: int((old.partition == p).sum()) * 3 // 4 for p in range(PARTITIONS)}
    # Past the old seam wherever ingest had committed something: the watermark cannot tell.
    assert all(int((new.partition == p).sum()) > seam[p] for p in seam if seam[p])
    engine, tail = engine_for(
        catalog, new, seam, recorded_id="old-id", ingested_log=old, topic_uuid="new-id"
    )
    with engine:
        result = engine.query(list(SYMBOLS), T0, T0 + 31 * MIN)
    prov = result.provenance
    # What the system still holds: the old topic's committed part, and all of the new one.
    lim = np.array([seam[p] for p in range(PARTITIONS)])
    held = TradeBatch.concat([old.take(old.offset < lim[old.partition]), new])
    expected = sorted(set(brute_force(held, SYMBOLS, T0, T0 + 31 * MIN)))
    assert keys_of(result.rows) == expected
    assert tail.reads == [dict.fromkeys(range(PARTITIONS), OFFSET_BEGINNING)]
    assert prov.mode == "topic-recreated" and not prov.partial
    assert prov.topic_id == "new-id" and prov.recorded_topic_id == "old-id"
    assert prov.seam == dict.fromkeys(range(PARTITIONS), OFFSET_BEGINNING)
    assert "recreated" in prov.warnings[0]
    # The re-sent feed repeats every committed row: the dedup drops each once.
    committed = int(sum(seam.values()))
    assert prov.duplicates_removed == (committed if resend else 0)
    assert prov.rows_by_source["iceberg"] == committed
    assert prov.as_dict()["topic_id"] == "new-id"
    if not resend:
        assert len(result) == len(brute_force(feed, SYMBOLS, T0, T0 + 31 * MIN)) - (
            len(old) - committed
        )


@pytest.mark.parametrize(
    ("recorded", "current"), [("same", "same"), (None, "new-id"), ("old-id", None)]
)
def test_same_or_unknown_topic_id_keeps_the_recorded_seam(
    catalog: SqlCatalog, recorded: str | None, current: str | None
) -> None:
    log = stream(400)
    seam = {p: min(20, int((log.partition == p).sum())) for p in range(PARTITIONS)}
    engine, tail = engine_for(catalog, log, seam, recorded_id=recorded, topic_uuid=current)
    with engine:
        result = engine.query(list(SYMBOLS), T0, T0 + 31 * MIN)
    assert result.provenance.mode == "offset"
    assert tail.reads == [seam] and result.provenance.topic_id == current
    assert keys_of(result.rows) == brute_force(log, SYMBOLS, T0, T0 + 31 * MIN)
