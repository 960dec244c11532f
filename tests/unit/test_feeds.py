"""Feed sources and fault injection, with no services."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from k2lib.errors import ConfigError, SourceError
from k2lib.feeds import FaultInjector, FaultSpec, open_source
from k2lib.feeds.binance import venue_of
from k2lib.feeds.synthetic import SyntheticConfig, SyntheticFeed
from k2lib.wire.codec import decode_batch

pytestmark = [pytest.mark.unit]


def all_rows(source):
    return [t for b in source.batches(7) for t in b.trades()]


def test_csv_reads_iso_and_epoch_ns_and_reports_malformed_rows(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text(
        "exchange,symbol,seq,ts,price,qty,side\n"
        "binance,BTCUSDT,1,2024-08-09T00:00:00.123456+00:00,61837.63,0.02,buy\n"
        "binance,BTCUSDT,2,1723161600123456000,61837.64,0.01,\n"
        "binance,BTCUSDT,x,2024-08-09T00:00:00Z,1,1,\n"
        "binance,BTCUSDT,3,2024-08-09T00:00:00,1,1,\n"
        "binance,BTCUSDT,4,2024-08-09T02:00:00+02:00,1.000000001,1,\n"
        "binance,BTCUSDT,5,2024-08-09T02:00:00+02:00,1,1,sideways\n"
        "binance,BTCUSDT,6,2024-08-09T02:00:00+02:00,1,1,SELL\n"
    )
    src = open_source(str(path))
    rows = all_rows(src)
    assert [r.seq for r in rows] == [1, 2, 6]
    assert rows[0].exch_ts == 1_723_161_600_123_456 == rows[1].exch_ts
    assert rows[2].exch_ts == 1_723_161_600_000_000 and rows[2].side == "sell"
    assert str(rows[0].price) == "61837.63000000"
    assert src.report.malformed == 4
    assert src.report.reasons[0].startswith("t.csv:4")


def test_csv_missing_columns_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("exchange,symbol,price\nb,S,1\n")
    with pytest.raises(SourceError, match="missing columns"):
        all_rows(open_source(str(path)))


def test_parquet_source(tmp_path: Path):
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "exchange": ["binance", "binance"],
                "symbol": ["ETHUSDT", "ETHUSDT"],
                "seq": [10, 11],
                "ts": ["2024-08-09T00:00:00+00:00", "bad"],
                "price": ["2600.5", "2600.6"],
                "qty": ["1", "2"],
            }
        ),
        path,
    )
    src = open_source(str(path))
    rows = all_rows(src)
    assert [r.seq for r in rows] == [10] and src.report.malformed == 1


def test_binance_capture_parses_trades_only(tmp_path: Path):
    path = tmp_path / "usdm_btcusdt_20240808.gz"
    lines = [
        '{"lastUpdateId": 1}',
        '1723161254087896568 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate"}}',
        '1723161255088176367 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322,'
        '"T":1723161256322,"s":"BTCUSDT","t":5266583935,"p":"61800.30","q":"0.006",'
        '"X":"MARKET","m":false}}',
        '1723161255088176368 {"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"}}',
    ]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    src = open_source(str(path))
    rows = all_rows(src)
    assert len(rows) == 1 and src.report.malformed == 1
    t = rows[0]
    assert (t.exchange, t.symbol, t.seq, t.side) == ("binance-usdm", "BTCUSDT", 5266583935, "buy")
    assert t.exch_ts == 1723161256322000 and t.recv_ts == 1723161255088176
    assert str(t.price) == "61800.30000000"


def test_venue_comes_from_name_or_flag(tmp_path: Path):
    assert venue_of(Path("spot_ethusdt_20240808.gz")) == "binance"
    with pytest.raises(SourceError, match="venue"):
        venue_of(Path("trades.gz"))


def test_unknown_source_is_a_clear_error():
    with pytest.raises(SourceError, match="no such source"):
        open_source("/no/such/file.csv")


def test_synthetic_is_seeded_and_plausible():
    a = SyntheticFeed(SyntheticConfig(seed=3, records=5000, start_us=10**15))
    b = SyntheticFeed(SyntheticConfig(seed=3, records=5000, start_us=10**15))
    ba = [x for x in a.batches(1000)]
    bb = [x for x in b.batches(1000)]
    assert all(
        np.array_equal(x.price, y.price) and np.array_equal(x.seq, y.seq)
        for x, y in zip(ba, bb, strict=True)
    )
    rows = [t for x in ba for t in x.trades()]
    by_sym: dict[str, list[int]] = {}
    for t in rows:
        by_sym.setdefault(t.symbol, []).append(t.seq)
    for seqs in by_sym.values():  # per-symbol contiguous ids
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    btc = [t for t in rows if t.symbol == "BTCUSDT"]
    assert len(btc) > len([t for t in rows if t.symbol == "ETHUSDT"])  # BTC trades most
    assert all(50_000 < float(t.price) < 75_000 for t in btc)
    assert all(t.qty > 0 for t in rows)


def test_fault_spec_parsing():
    spec = FaultSpec.parse("dup=0.01,gap=0.001,reorder=0.01,poison=0.001")
    assert spec.dup == 0.01 and spec.active
    for bad in ("dup", "foo=0.1", "dup=2", "dup=x"):
        with pytest.raises(ConfigError):
            FaultSpec.parse(bad)


def test_fault_truth_matches_what_was_published(tmp_path: Path):
    feed = SyntheticFeed(SyntheticConfig(seed=1, records=30_000, start_us=10**15))
    inj = FaultInjector(FaultSpec.parse("dup=0.02,gap=0.01,reorder=0.02,poison=0.01"), seed=9)
    keys, values = [], []
    for b in feed.batches(5000):
        k, v = inj.apply(b)
        keys += k
        values += v
    truth = inj.truth.as_dict()
    decoded = decode_batch(values)
    assert len(decoded.rejects) == truth["poison"] > 0
    got = decoded.batch
    seen: dict[tuple, int] = {}
    for t in got.trades():
        seen[t.key] = seen.get(t.key, 0) + 1
    assert sum(seen.values()) - len(seen) == truth["duplicates_total"] > 0
    assert (
        len(seen)
        == truth["unique_records"]
        == 30_000 - sum(len(v) for v in inj.truth.dropped.values())
    )
    # every truth gap is a run of seqs missing from what was published, and nothing else is
    missing_in_gaps = {
        (g["exchange"], g["symbol"], s)
        for g in truth["gaps"]
        for s in range(g["first"], g["last"] + 1)
    }
    assert not missing_in_gaps & set(seen)
    assert truth["reordered"] > 0
    for k, v in zip(keys, values, strict=True):  # keys are exchange:symbol of the value
        if len(v) == 76 and v[:2] == b"K2":
            assert k.startswith(b"synth:")
    inj.truth.write(tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text())["poison"] == truth["poison"]
