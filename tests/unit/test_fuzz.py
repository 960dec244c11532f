"""Fuzzing the untrusted inputs: wire bytes, CSV files and capture lines.

Whatever arrives, the only outcomes are data (a valid record, a DLQ reject with its
reason, a counted malformed row) or a typed K2Error. Never another exception.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k2lib.errors import K2Error
from k2lib.feeds import open_source
from k2lib.wire.codec import RECORD_SIZE, decode_batch, encode_batch
from k2lib.wire.schema import TradeBatch
from tests.helpers import write_parquet_trades
from tests.strategies import prices

pytestmark = [pytest.mark.unit, pytest.mark.phase2]

GOOD = encode_batch(
    TradeBatch.from_columns(
        exchange=["binance"],
        symbol=["BTCUSDT"],
        seq=[1],
        exch_ts=[1_723_161_600_000_000],
        recv_ts=[1_723_161_600_000_000],
        price=[100],
        qty=[5],
    )
)[0]


def mutate(data: st.DataObject) -> bytes:
    raw = bytearray(GOOD)
    for _ in range(data.draw(st.integers(0, 6))):
        raw[data.draw(st.integers(0, RECORD_SIZE - 1))] = data.draw(st.integers(0, 255))
    return bytes(raw)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_decoder_never_raises_and_accounts_for_every_value(data):
    values = data.draw(
        st.lists(
            st.one_of(
                st.binary(max_size=200),
                st.builds(lambda: GOOD),
                st.none(),
                st.just(b"").map(lambda _: mutate(data)),
            ),
            max_size=40,
        )
    )
    result = decode_batch(values)
    assert len(result.batch) + len(result.rejects) == len(values)
    assert all(r.reason for r in result.rejects)
    assert sorted(result.index.tolist() + [r.index for r in result.rejects]) == list(
        range(len(values))
    )


def _read_all(path: Path) -> None:
    """Read a whole source: every batch has aligned columns and every record is counted."""
    try:
        src = open_source(str(path))
        read = 0
        for b in src.batches(10):
            assert len({len(getattr(b, name)) for name in b.__dataclass_fields__}) == 1
            read += len(b)
            assert read == src.report.records
        assert src.report.malformed == len(src.report.reasons) or len(src.report.reasons) == 20
    except K2Error:
        pass


CSV_CELL = st.one_of(
    st.text(max_size=12),
    st.integers().map(str),
    st.integers(-(2**80), 2**80).map(str),  # past int64 both ways
    st.sampled_from(
        [
            "2024-08-09T00:00:00+00:00",
            "1723161600000000000",
            "61837.63",
            "buy",
            "sell",
            "",
            "-1",
            "1e5",
        ]
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.sampled_from(
        ["exchange,symbol,seq,ts,price,qty,side", "exchange,symbol,seq,ts,price,qty", "a,b,c", ""]
    ),
    rows=st.lists(st.lists(CSV_CELL, min_size=0, max_size=8), max_size=15),
    junk=st.binary(max_size=40),
)
def test_csv_reader_never_crashes(header, rows, junk):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.csv"
        body = "\n".join([header] + [",".join(r) for r in rows]).encode() + junk
        path.write_bytes(body)
        _read_all(path)


TRADE = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":%s,"t":%s,"p":%s,'
    '"q":%s,"T":%s,"m":%s}}'
)
JSONISH = st.one_of(
    st.integers(-5, 10**12).map(str),
    st.integers(-(2**80), 2**80).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.just("[1]"),
    st.just("{}"),
    st.just('"%s"' % ("X" * 17)),
    st.just('"61837.63000000"'),
    st.just('"x"'),
    st.just("null"),
    st.just("true"),
    st.text(max_size=5),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(JSONISH, JSONISH, JSONISH, JSONISH, JSONISH, JSONISH).map(
                lambda t: "1723161254087896568 " + TRADE % t
            ),
            st.text(max_size=60).map(lambda s: s.replace("\n", " ") + '@trade"'),
        ),
        max_size=20,
    ),
    st.binary(max_size=30),
)
def test_capture_reader_never_crashes(lines, tail):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spot_fuzz_20240808.gz"
        with gzip.open(path, "wb") as fh:
            fh.write("\n".join(lines).encode() + b"\n")
        _read_all(path)
        raw = path.read_bytes()
        path.write_bytes(raw[: max(1, len(raw) // 2)] + tail)  # truncated or trailing junk
        _read_all(path)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        prices("9999999999.99999999"),
        min_size=1,
        max_size=20,
    )
)
def test_parquet_decimals_round_trip_exactly(values):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.parquet"
        write_parquet_trades(
            path,
            "BTCUSDT",
            pa.array(values, pa.decimal128(18, 8)),
            pa.array(values, pa.decimal128(38, 10)),
        )
        src = open_source(str(path))
        got = [t for b in src.batches(7) for t in b.trades()]
    assert src.report.malformed == 0
    assert [t.price for t in got] == values == [t.qty for t in got]
