"""Feed sources and fault injection, with no services."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from k2lib.errors import ConfigError, SourceError
from k2lib.feeds import FaultInjector, FaultSpec, open_source
from k2lib.feeds.binance import venue_of
from k2lib.feeds.files import decimal_text
from k2lib.feeds.synthetic import SyntheticConfig, SyntheticFeed
from k2lib.wire.codec import decode_batch, encode_batch
from k2lib.wire.schema import TradeBatch
from tests.helpers import write_parquet_trades

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
    write_parquet_trades(
        path,
        "ETHUSDT",
        ["2600.5", "2600.6"],
        ["1", "2"],
        seq=[10, 11],
        ts=["2024-08-09T00:00:00+00:00", "bad"],
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


# -- bad input from a feed: skipped with its reason, the columns stay aligned -------------

GOOD_TRADE = (
    '1723161255088176367 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322,'
    '"T":1723161256322,"s":"BTCUSDT","t":%d,"p":"61800.30","q":"0.006","m":true}}'
)


def trade_line(**fields) -> str:
    data = {"e": "trade", "T": 1723161256322, "s": "BTCUSDT", "t": 7, "p": "1.5", "q": "2"}
    data["m"] = False
    data.update(fields)
    data = {k: v for k, v in data.items() if v is not MISSING}
    return "1723161255088176367 " + json.dumps({"stream": "btcusdt@trade", "data": data})


MISSING = object()


def assert_aligned(batches) -> None:
    for b in batches:
        lengths = {name: len(getattr(b, name)) for name in b.__dataclass_fields__}
        assert len(set(lengths.values())) == 1, lengths


@pytest.mark.parametrize(
    "bad,reason",
    [
        ('1723161255088176367 {"stream":"btcusdt@trade","data":{"e":"trade",', "Expecting"),
        ('1723161255088176367 ["x@trade"]', "no data object"),
        ('1723161255088176367 {"stream":"x@trade","data":[1]}', "no data object"),
        ("nan " + trade_line()[20:], "receive time must be integer ns"),
        ("9" * 5_000 + trade_line()[19:], "receive time must be integer ns, got '999"),
        ("9" * 30 + trade_line()[19:], "receive time in us 999999999999999999999999999 is outside"),
        ("1723161255088176367 " + "[" * 100_000 + '"@trade"', "nested too deeply"),
        (trade_line(p=MISSING), "field p missing"),
        (trade_line(q=MISSING), "field q missing"),
        (trade_line(m=MISSING), "field m missing"),
        (trade_line(p=61800.3), "field p must be str, got 61800.3"),
        (trade_line(p=None), "field p must be str, got None"),
        (trade_line(p="1e-7"), "not a decimal"),
        (trade_line(t="7"), "field t must be int, got '7'"),
        (trade_line(t=True), "field t must be int, got True"),
        (trade_line(t=7.5), "field t must be int"),
        (trade_line(t=2**63), "trade id t 9223372036854775808 is outside the int64 range"),
        (trade_line(T=2**62), "trade time T in us"),
        (trade_line(m="yes"), "field m must be bool"),
        (trade_line(s="X" * 17), "symbol must be 1 to 16 printable ASCII"),
        (trade_line(s="BTC€"), "symbol must be 1 to 16 printable ASCII"),
        (trade_line(s=5), "field s must be str"),
        (trade_line(e="aggTrade"), "not a trade event"),
    ],
)
def test_a_bad_trade_line_is_skipped_with_its_reason_and_the_rest_stay_aligned(
    tmp_path: Path, bad: str, reason: str
):
    path = tmp_path / "spot_btcusdt_20240808.gz"
    lines = [GOOD_TRADE % 1, GOOD_TRADE % 2, bad, GOOD_TRADE % 3]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    src = open_source(str(path))
    batches = list(src.batches(7))  # one chunk: the bad line sits between good rows
    assert_aligned(batches)
    rows = [t for b in batches for t in b.trades()]
    assert [(t.seq, str(t.price), t.side) for t in rows] == [
        (s, "61800.30000000", "sell") for s in (1, 2, 3)
    ]
    assert all(t.exch_ts == 1723161256322000 for t in rows)
    assert (src.report.records, src.report.malformed) == (3, 1)
    assert src.report.reasons[0].startswith("spot_btcusdt_20240808.gz:3: ")
    assert reason in src.report.reasons[0]
    assert len(src.report.reasons[0]) < 200  # a huge bad value is quoted short


def test_a_bad_exchange_name_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "trades.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(GOOD_TRADE % 1 + "\n")
    with pytest.raises(SourceError, match="exchange must be 1 to 16"):
        open_source(str(path), exchange="x" * 17)
    assert [t.exchange for t in all_rows(open_source(str(path), exchange="kraken"))] == ["kraken"]


def test_a_real_capture_with_corrupted_lines_replays_every_good_trade(
    tmp_path: Path, binance_dir: Path
):
    original = binance_dir / "spot_ethusdt_20240808.gz"
    with gzip.open(original, "rt") as fh:
        lines = fh.read().splitlines()
    trade_at = [i for i, line in enumerate(lines) if '@trade"' in line]
    first, middle, last = trade_at[0], trade_at[len(trade_at) // 2], trade_at[-1]

    def without(line: str, key: str) -> str:
        recv, payload = line.split(" ", 1)
        msg = json.loads(payload)
        del msg["data"][key]
        return f"{recv} {json.dumps(msg)}"

    corrupted = {  # position in the original -> the bad line inserted before it
        first: lines[first][: len(lines[first]) // 2],  # cut short mid-JSON
        middle: without(lines[middle], "p"),  # fails after s, t and T parsed
        last: lines[last].replace('"m":true', '"m":"?"').replace('"m":false', '"m":"?"'),
    }
    out: list[str] = []
    inserted_at: list[int] = []  # 1-based line numbers of the inserted lines
    for i, line in enumerate(lines):
        if i in corrupted:
            out.append(corrupted[i])
            inserted_at.append(len(out))
        out.append(line)
    bad = tmp_path / original.name
    with gzip.open(bad, "wt") as fh:
        fh.write("\n".join(out) + "\n")

    clean_src, bad_src = open_source(str(original)), open_source(str(bad))
    clean = list(clean_src.batches(1000))
    got = list(bad_src.batches(1000))
    assert_aligned(got)
    assert sum(map(len, got)) == sum(map(len, clean)) == 6106
    for name in ("seq", "exch_ts", "recv_ts", "price", "qty", "side"):
        a = np.concatenate([getattr(b, name) for b in clean])
        b = np.concatenate([getattr(b, name) for b in got])
        assert np.array_equal(a, b), name
    assert bad_src.report.malformed == 3 and clean_src.report.malformed == 0
    where = [r.split(": ", 1)[0] for r in bad_src.report.reasons]
    assert where == [f"{bad.name}:{n}" for n in inserted_at]
    assert "field p missing" in bad_src.report.reasons[1]
    assert "field m must be bool" in bad_src.report.reasons[2]


# -- files: exact Parquet decimals, int64 overflow as a reported row ------------------------


def test_parquet_decimals_below_1e_6_round_trip_exactly(tmp_path: Path):
    prices = ["0.00000012", "0.00000001", "0.0000009", "61837.63000000", "9999999999.99999999"]
    path = tmp_path / "d.parquet"
    write_parquet_trades(
        path,
        "SHIBUSDT",
        pa.array([Decimal(p) for p in prices], pa.decimal128(18, 8)),
        pa.array([1e-7, 0.5, 1e-5, 2.0, 3.25], pa.float64()),
    )
    src = open_source(str(path))
    rows = all_rows(src)
    assert src.report.malformed == 0
    assert [r.price for r in rows] == [Decimal(p) for p in prices]
    assert [r.qty for r in rows] == [
        Decimal(q) for q in ("0.0000001", "0.5", "0.00001", "2", "3.25")
    ]


@pytest.mark.parametrize(
    "raw,text",
    [
        ("0.1", "0.1"),
        (5, "5"),
        (1e-7, "0.0000001"),
        (1.5e-8, "0.000000015"),  # then refused by parse_decimal: more than 8 places
        (float("nan"), "NaN"),
    ],
)
def test_decimal_text_never_uses_an_exponent(raw, text):
    assert decimal_text(raw) == text


def test_csv_seq_or_ts_beyond_int64_is_a_reported_row_not_a_crash(tmp_path: Path):
    path = tmp_path / "big.csv"
    ok = "binance,BTCUSDT,{seq},2024-08-09T00:00:00Z,1,1,"
    path.write_text(
        "exchange,symbol,seq,ts,price,qty,side\n"
        + "\n".join(
            [
                ok.format(seq=1),
                ok.format(seq=2**63),  # line 3
                f"binance,BTCUSDT,3,{10**30},1,1,",  # line 4: ts in ns beyond int64 in us
                ok.format(seq="9" * 5000),  # line 5: past Python's int-string limit
                f"binance,BTCUSDT,4,{'1' * 5000},1,1,",  # line 6
                f"binance,BTCUSDT,5,-{10**25},1,1,",  # line 7
                ok.format(seq=2**63 - 1),  # fits: the wire's own rules decide (DLQ)
                ok.format(seq=2**53),  # likewise
                ok.format(seq=6),
            ]
        )
        + "\n"
    )
    src = open_source(str(path))
    batches = list(src.batches(50))  # one chunk with the bad rows in it
    assert_aligned(batches)
    rows = [t for b in batches for t in b.trades()]
    assert [r.seq for r in rows] == [1, 2**63 - 1, 2**53, 6]
    assert src.report.malformed == 5
    where = [r.split(": ", 1) for r in src.report.reasons]
    assert [w for w, _ in where] == [f"big.csv:{n}" for n in (3, 4, 5, 6, 7)]
    assert where[0][1] == "seq 9223372036854775808 is outside the int64 range"
    assert where[1][1] == f"ts {10**27} is outside the int64 range"
    assert "seq '9999" in where[2][1] and "outside the int64 range" in where[2][1]
    assert all("int64" in reason for _, reason in where)
    # What the reader passed on but the stages cannot take is a reject at decode, for the DLQ
    decoded = decode_batch(encode_batch(TradeBatch.concat(batches)))
    assert decoded.batch.seq.tolist() == [1, 6]
    assert [r.reason for r in decoded.rejects] == ["seq must be < 2**53"] * 2
