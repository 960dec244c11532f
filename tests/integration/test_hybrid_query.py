"""The hybrid query against the live stack: exact seam under concurrent commits, a consumer
far behind, a broker that lost data, and `k2 query` itself."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka import Producer as KafkaProducer
from confluent_kafka.admin import AdminClient

from k2lib.config import K2Settings
from k2lib.connect import create_topics, load_k2_catalog, topic_id
from k2lib.errors import InconsistentSeamError
from k2lib.query import HybridQueryEngine, KafkaTail, TailConfig
from k2lib.query.merge import OFFSET_BEGINNING
from k2lib.storage.table import ensure_table, latest_offsets
from k2lib.testing import (
    append_with_offsets,
    ingest_prefix,
    next_seq,
    produce,
    synthetic_trades,
)
from k2lib.wire.codec import decode_batch
from k2lib.wire.partitioner import partition_for
from k2lib.wire.schema import TradeBatch
from tests.helpers import run_k2

pytestmark = [pytest.mark.integration, pytest.mark.hybrid, pytest.mark.phase2]

MIN = 60_000_000
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")


def now_us() -> int:
    return time.time_ns() // 1000


def keyset(rows: pa.Table) -> set[tuple[str, str, int]]:
    columns = [rows.column(c).to_pylist() for c in ("exchange", "symbol", "seq")]
    return set(zip(*columns, strict=True))


def expected_keys(batch: TradeBatch, symbols: tuple[str, ...], start: int, end: int) -> set:
    keep = np.isin(batch.symbol, [s.encode() for s in symbols])
    keep &= (batch.exch_ts >= start) & (batch.exch_ts < end)
    rows = batch.take(keep)
    return {
        (e.decode(), s.decode(), int(q))
        for e, s, q in zip(rows.exchange, rows.symbol, rows.seq, strict=True)
    }


@pytest.fixture
def seeded(k2_settings: K2Settings) -> Iterator[tuple[K2Settings, TradeBatch]]:
    """The test's topic holding 20k trades from the last 20 minutes, and an empty table."""
    batch = synthetic_trades(
        20_000, start_us=now_us() - 20 * MIN, span_us=20 * MIN, symbols=SYMBOLS, seed=7
    )
    produce(k2_settings, k2_settings.topic, batch)
    ensure_table(load_k2_catalog(k2_settings), k2_settings.table)
    yield k2_settings, batch


class Writer(threading.Thread):
    """A minimal ingest writer: consume, append with the next offsets recorded, repeat."""

    def __init__(self, settings: K2Settings, total: int, rows_per_commit: int) -> None:
        super().__init__(daemon=True)
        self.settings, self.total, self.rows_per_commit = settings, total, rows_per_commit
        self.commits = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            self.error = exc

    def _run(self) -> None:
        s = self.settings
        table = load_k2_catalog(s).load_table(s.table)
        offsets = {p: latest_offsets(table).offsets.get(p, 0) for p in range(s.partitions)}
        consumer = Consumer(
            s.kafka_config(**{"group.id": f"w{uuid.uuid4().hex}", "enable.auto.commit": False})
        )
        consumer.assign([TopicPartition(s.topic, p, o) for p, o in offsets.items()])
        done = 0
        try:
            while done < self.total:
                msgs = [
                    m
                    for m in consumer.consume(self.rows_per_commit, timeout=0.5)
                    if m.error() is None
                ]
                if not msgs:
                    continue
                decoded = decode_batch([m.value() for m in msgs])
                parts = np.array([m.partition() for m in msgs], np.int32)
                offs = np.array([m.offset() for m in msgs], np.int64)
                batch = decoded.batch.with_kafka(parts[decoded.index], offs[decoded.index])
                for p, o in zip(parts.tolist(), offs.tolist(), strict=True):
                    offsets[p] = max(offsets[p], o + 1)
                append_with_offsets(table, batch, s.topic, offsets)
                self.commits += 1
                done += len(msgs)
        finally:
            consumer.close()


def test_seam_is_exact_while_ingest_commits(seeded: tuple[K2Settings, TradeBatch]) -> None:
    settings, batch = seeded
    start, end = int(batch.exch_ts.min()), int(batch.exch_ts.max()) + 1
    want = expected_keys(batch, SYMBOLS, start, end)
    writer = Writer(settings, len(batch), rows_per_commit=700)
    writer.start()
    seen_mixed = 0
    answers = 0
    with HybridQueryEngine(settings) as engine:
        while writer.is_alive() or answers == 0:
            result = engine.query(list(SYMBOLS), start, end)
            got = keyset(result.rows)
            assert len(got) == len(result), "a record came back twice"
            assert got == want, f"missing {len(want - got)}, extra {len(got - want)}"
            prov = result.provenance
            assert not prov.partial and prov.mode == "offset"
            seen_mixed += prov.rows_by_source["iceberg"] > 0 and prov.rows_by_source["kafka"] > 0
            answers += 1
        writer.join(60)
        assert writer.error is None, writer.error
        final = engine.query(list(SYMBOLS), start, end)
    assert keyset(final.rows) == want and final.provenance.rows_by_source["kafka"] == 0
    print("commits", writer.commits, "answers", answers, "mixed", seen_mixed)
    assert writer.commits >= 10 and answers >= 5 and seen_mixed >= 3, (
        writer.commits,
        answers,
        seen_mixed,
    )


def test_consumer_far_behind_still_answers_in_full(seeded: tuple[K2Settings, TradeBatch]) -> None:
    settings, batch = seeded
    window = ("now-15m", "now")
    with HybridQueryEngine(settings) as engine:
        # Nothing ingested at all: every row comes from Kafka, and none is lost.
        before = engine.query("BTCUSDT", *window, exchange="binance")
        table = load_k2_catalog(settings).load_table(settings.table)
        ingest_prefix(settings, table, 0.3)  # the first 6 of 20 minutes
        result = engine.query("BTCUSDT", *window, exchange="binance")
    t = now_us()
    want = expected_keys(batch, ("BTCUSDT",), t - 15 * MIN, t)
    for answer in (before, result):
        got = keyset(answer.rows)
        assert len(got) == len(answer)
        # `now` moved between the two clocks by at most a few records' worth.
        assert len(got ^ want) <= 5, len(got ^ want)
    assert before.provenance.rows_by_source["iceberg"] == 0
    prov = result.provenance
    assert prov.rows_by_source["kafka"] > 5 * prov.rows_by_source["iceberg"] > 0
    assert prov.partitions == (partition_for(b"binance:BTCUSDT", settings.partitions),)
    assert prov.freshness()["kafka_age_s"] < 60


def test_poison_in_the_tail_is_skipped_and_counted(seeded: tuple[K2Settings, TradeBatch]) -> None:
    settings, _ = seeded
    producer = KafkaProducer(settings.kafka_config(partitioner="murmur2_random"))
    producer.produce(settings.topic, key=b"binance:BTCUSDT", value=b"not a K2 record")
    producer.flush(10)
    with HybridQueryEngine(settings) as engine:
        result = engine.query("BTCUSDT", "now-30m", "now", exchange="binance")
    assert result.provenance.dlq_skipped == 1 and len(result) > 0


def test_broker_behind_the_snapshot_is_reported(
    k2_settings: K2Settings, k2_env: dict[str, str]
) -> None:
    # A restarted in-memory broker: the snapshot recorded offsets the topic never reached.
    settings = k2_settings
    batch = synthetic_trades(200, start_us=now_us() - 5 * MIN, span_us=5 * MIN, seed=3)
    produce(settings, settings.topic, batch)
    table = ensure_table(load_k2_catalog(settings), settings.table)
    append_with_offsets(
        table,
        batch.with_kafka(np.zeros(200, np.int32), np.arange(200)),
        settings.topic,
        dict.fromkeys(range(settings.partitions), 1000),
    )
    with HybridQueryEngine(settings) as engine:
        with pytest.raises(InconsistentSeamError, match="behind"):
            engine.query(list(SYMBOLS), "now-10m", "now")
        partial = engine.query(list(SYMBOLS), "now-10m", "now", allow_partial=True)
    assert partial.provenance.partial
    assert any("lost data" in w for w in partial.provenance.warnings)
    query = ["query", "--symbol", "BTCUSDT", "--start", "now-10m", "--end", "now"]
    cli = run_k2(*query, env=k2_env, check=False, timeout=120)
    assert cli.returncode == 3 and "inconsistent seam" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_k2_query_prints_rows_and_provenance(
    seeded: tuple[K2Settings, TradeBatch], k2_env: dict[str, str]
) -> None:
    settings, _ = seeded
    ingest_prefix(settings, load_k2_catalog(settings).load_table(settings.table), 0.5)
    base = ["query", "--symbol", "ETHUSDT", "--exchange", "binance", "--start", "now-30m"]
    out = run_k2(*base, "--end", "now", env=k2_env, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert set(body) == {"rows", "provenance"} and body["rows"]
    assert {r["source"] for r in body["rows"]} == {"iceberg", "kafka"}
    assert body["provenance"]["mode"] == "offset"
    csv_out = run_k2(
        *base, "--end", "now", "--format", "csv", "--source", "historical", env=k2_env, timeout=120
    )
    lines = csv_out.stdout.splitlines()
    assert lines[0].startswith("exchange,symbol,seq,exch_ts") and len(lines) > 1
    bad = run_k2(*base[:-2], "--start", "soon", "--end", "now", env=k2_env, check=False, timeout=60)
    assert bad.returncode == 2 and "cannot read time 'soon'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_topics_of_other_tests_do_not_leak(k2_settings: K2Settings) -> None:
    other = k2_settings.with_(topic=f"test.trades.{uuid.uuid4().hex[:10]}")
    create_topics(other, {other.topic: other.partitions})
    ensure_table(load_k2_catalog(k2_settings), k2_settings.table)
    with HybridQueryEngine(k2_settings) as engine:
        assert len(engine.query(list(SYMBOLS), "now-1h", "now")) == 0


@pytest.mark.parametrize("cache", [0, 1_000_000])
def test_tail_reads_exactly_start_to_watermark_or_reports_behind(
    k2_settings: K2Settings, cache: int
) -> None:
    # Random starts, reused consumers, cache on and off: a read returns exactly
    # [start, hw) of each partition, or names the partition behind when start > hw.
    settings = k2_settings
    produce(
        settings,
        settings.topic,
        synthetic_trades(4_000, start_us=now_us(), span_us=MIN, symbols=SYMBOLS, seed=5),
    )
    exact = KafkaTail(settings, config=TailConfig(cache_records=0, pool_size=0))
    hw = exact.read(settings.topic, dict.fromkeys(range(settings.partitions), 0)).end_offsets
    tail = KafkaTail(settings, config=TailConfig(cache_records=cache, pool_size=2, timeout_s=5))
    rng = random.Random(cache)
    try:
        for _ in range(60):
            parts = rng.sample(range(settings.partitions), rng.randint(1, settings.partitions))
            start = {
                p: rng.choice([OFFSET_BEGINNING, rng.randint(0, hw[p]), hw[p] + rng.randint(1, 9)])
                for p in parts
            }
            got = tail.read(settings.topic, start)
            assert not got.incomplete
            for p, off in start.items():
                if off > hw[p]:
                    assert got.behind[p] == (off, hw[p])
                    continue
                offsets = got.batch.offset[got.batch.partition == p]
                assert got.end_offsets[p] == hw[p]
                assert offsets.tolist() == list(range(max(off, 0), hw[p]))
            assert got.rows.num_rows == len(got.batch)
    finally:
        tail.close()


def test_a_recreated_topic_is_answered_in_full(k2_settings: K2Settings) -> None:
    # Ingest committed half the topic; the broker then lost it, and the feed went on into
    # a new topic of the same name that is soon past the old seam. Offsets alone would
    # start the tail at the old seam and miss [0, seam) of the new topic.
    settings = k2_settings
    t0 = now_us() - 20 * MIN
    first = synthetic_trades(2_000, start_us=t0, span_us=10 * MIN, symbols=SYMBOLS, seed=11)
    produce(settings, settings.topic, first)
    table = ensure_table(load_k2_catalog(settings), settings.table)
    old_id = topic_id(settings, settings.topic)
    if old_id is None:
        pytest.skip(
            "the broker has no topic ids (noida-db answers the zero UUID): a recreated "
            "topic cannot be told from the old one"
        )
    assert old_id is not None
    seam = ingest_prefix(settings, table, 0.5, topic_id=old_id)
    window = (t0, now_us() + MIN)
    with HybridQueryEngine(settings) as engine:  # one engine across the recreation
        before = engine.query(list(SYMBOLS), *window)
        assert before.provenance.mode == "offset" and len(before) == len(first)
        admin = AdminClient(settings.kafka_config())
        admin.delete_topics([settings.topic])[settings.topic].result(10)
        create_topics(settings, {settings.topic: settings.partitions})
        second = synthetic_trades(
            3_000,
            start_us=t0 + 10 * MIN,
            span_us=10 * MIN,
            symbols=SYMBOLS,
            first_seq=next_seq(first),
            seed=12,
        )
        produce(settings, settings.topic, second)
        after = engine.query(list(SYMBOLS), *window)
        stored = engine.query(list(SYMBOLS), *window, source="historical")
    prov = after.provenance
    assert prov.mode == "topic-recreated" and not prov.partial
    assert prov.recorded_topic_id == old_id and prov.topic_id not in (None, old_id)
    assert prov.seam == dict.fromkeys(range(settings.partitions), OFFSET_BEGINNING)
    assert any("recreated" in w for w in prov.warnings)
    got = keyset(after.rows)
    assert len(got) == len(after), "a record came back twice"
    assert len(stored) == sum(seam.values()) and prov.rows_by_source["iceberg"] == len(stored)
    # Everything the system holds: the committed half of the old topic, all of the new.
    assert got == keyset(stored.rows) | expected_keys(second, SYMBOLS, *window)
    assert prov.rows_by_source["kafka"] == len(second)
