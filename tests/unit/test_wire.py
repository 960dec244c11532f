"""Schema and wire codec: exact decimals, UTC microseconds, poison becomes data."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k2lib.errors import ValidationError
from k2lib.ingestion.dedup import CommitAlignedDeduplicator
from k2lib.ingestion.sequence._runs import MAX_ABS_VALUE, plan_runs
from k2lib.wire.codec import (
    MAX_SEQ,
    MAX_TS_US,
    MIN_TS_US,
    RECORD_SIZE,
    decode_batch,
    encode_batch,
)
from k2lib.wire.factorize import factorize, factorize_pair
from k2lib.wire.partitioner import murmur2, partition_for
from k2lib.wire.schema import Trade, TradeBatch, format_decimal, parse_decimal
from tests.strategies import prices

pytestmark = [pytest.mark.unit]

TS = 1_723_161_600_000_000


def batch(n: int = 3, **over) -> TradeBatch:
    cols = dict(
        exchange=["binance"] * n,
        symbol=["BTCUSDT"] * n,
        seq=list(range(n)),
        exch_ts=[TS + i for i in range(n)],
        recv_ts=[TS + i for i in range(n)],
        price=[parse_decimal("61837.63")] * n,
        qty=[parse_decimal("0.02")] * n,
        side=[1] * n,
    )
    cols.update(over)
    return TradeBatch.from_columns(**cols)


@pytest.mark.parametrize(
    "text,units",
    [
        ("61837.63000000", 6_183_763_000_000),
        ("0.00000001", 1),
        ("1", 100_000_000),
        ("0.006", 600_000),
        ("-1.5", -150_000_000),
        (".5", 50_000_000),
        ("1.123456780", 112_345_678),
    ],
)
def test_parse_decimal_is_exact(text, units):
    assert parse_decimal(text) == units


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "1e5", "0.000000001", "1" * 12])
def test_parse_decimal_rejects_bad_input(text):
    with pytest.raises(ValidationError):
        parse_decimal(text)


@settings(deadline=None)
@given(prices("9999999999"))
def test_decimal_round_trips_through_wire_and_arrow(value):
    units = parse_decimal(format(value, "f"))
    assert Decimal(format_decimal(units)) == value
    b = batch(1, price=[units])
    decoded = decode_batch(encode_batch(b)).batch
    assert decoded.price[0] == units
    assert decoded.to_arrow().column("price")[0].as_py() == value


def test_arrow_round_trip_keeps_every_column():
    b = batch(4, side=[0, 1, 2, 1])
    table = b.to_arrow()
    assert str(table.schema.field("exch_ts").type) == "timestamp[us, tz=UTC]"
    assert table.column("side").to_pylist() == [None, "buy", "sell", "buy"]
    back = TradeBatch.from_arrow(table)
    for name in ("seq", "exch_ts", "recv_ts", "price", "qty", "side"):
        assert np.array_equal(getattr(back, name), getattr(b, name)), name
    assert back.symbol.tolist() == [b"BTCUSDT"] * 4


def test_encode_decode_is_identity_and_fixed_size():
    b = batch(5)
    values = encode_batch(b)
    assert all(len(v) == RECORD_SIZE for v in values)
    result = decode_batch(values)
    assert not result.rejects
    assert list(result.batch.trades()) == list(b.trades())


def test_poison_messages_become_rejects_with_reasons():
    good = encode_batch(batch(3))
    bad_price = bytearray(good[1])
    bad_price[60:68] = (0).to_bytes(8, "little")
    bad_magic = b"XX" + good[0][2:]
    values = [good[0], b"{json}", bytes(bad_price), None, bad_magic, good[2]]
    result = decode_batch(values)
    assert result.index.tolist() == [0, 5]
    reasons = {r.index: r.reason for r in result.rejects}
    assert reasons[1].startswith("wrong length 6 bytes")
    assert reasons[2] == "price must be > 0"
    assert reasons[3] == "empty message (no value)"
    assert reasons[4] == "bad magic (not a K2 record)"
    assert result.rejects[0].value == b"{json}"


def test_validation_rules_each_have_a_reason():
    cases = {
        "qty must be > 0": dict(qty=[0, 1, 1]),
        "seq must be >= 0": dict(seq=[-1, 1, 2]),
        "exch_ts out of range": dict(exch_ts=[5, TS, TS]),
    }
    for reason, over in cases.items():
        result = decode_batch(encode_batch(batch(3, **over)))
        assert [r.reason for r in result.rejects] == [reason]


@pytest.mark.parametrize(
    "over,reason",
    [
        (dict(seq=[0, 2**53, 2]), "seq must be < 2**53"),
        (dict(seq=[0, 2**63 - 1, 2]), "seq must be < 2**53"),
        (dict(seq=[0, -(2**63), 2]), "seq must be >= 0"),
        (dict(exch_ts=[TS, MAX_TS_US, TS]), "exch_ts out of range"),
        (dict(exch_ts=[TS, MIN_TS_US - 1, TS]), "exch_ts out of range"),
        (dict(recv_ts=[TS, -(2**63), TS]), "recv_ts out of range"),
        (dict(recv_ts=[TS, 2**63 - 1, TS]), "recv_ts out of range"),
        (dict(price=[1, 10**18, 1]), "price out of range for decimal(18,8)"),
        (dict(qty=[1, -(2**63), 1]), "qty must be > 0"),
    ],
)
def test_an_out_of_range_record_is_rejected_and_the_others_pass(over, reason):
    result = decode_batch(encode_batch(batch(3, **over)))
    assert [(r.index, r.reason) for r in result.rejects] == [(1, reason)]
    assert result.index.tolist() == [0, 2]
    assert result.batch.seq.tolist() == [batch(3, **over).seq[0], batch(3, **over).seq[2]]


def test_the_largest_accepted_seq_is_the_largest_the_stages_take():
    edge = batch(2, seq=[MAX_SEQ - 1, MAX_SEQ])
    result = decode_batch(encode_batch(edge))
    assert result.batch.seq.tolist() == [MAX_SEQ - 1]
    assert [r.reason for r in result.rejects] == ["seq must be < 2**53"]
    # What decodes, the sequence tracker and the dedup accept; the reject they would not.
    plan_runs(result.batch, np.ones(1, bool))
    CommitAlignedDeduplicator._keys(result.batch)
    with pytest.raises(ValidationError):
        plan_runs(edge, np.ones(2, bool))
    with pytest.raises(ValidationError):
        CommitAlignedDeduplicator._keys(edge)


def test_the_wire_bounds_lie_inside_what_the_stages_track_exactly():
    assert MAX_SEQ == MAX_ABS_VALUE
    assert -MAX_ABS_VALUE < MIN_TS_US < MAX_TS_US <= MAX_ABS_VALUE


def test_names_must_be_ascii_and_short():
    with pytest.raises(ValidationError):
        batch(1, symbol=["BTC€"])
    with pytest.raises(ValidationError):
        batch(1, symbol=["X" * 17])


def test_key_codes_and_kafka_keys():
    b = batch(
        4,
        exchange=["binance", "binance-usdm", "binance", "binance"],
        symbol=["BTCUSDT", "BTCUSDT", "ETHUSDT", "BTCUSDT"],
    )
    codes, pairs = b.key_codes()
    assert codes[0] == codes[3] and len(set(codes.tolist())) == 3
    assert b.kafka_keys()[1] == b"binance-usdm:BTCUSDT"
    assert {p for p in pairs} == {
        ("binance", "BTCUSDT"),
        ("binance-usdm", "BTCUSDT"),
        ("binance", "ETHUSDT"),
    }


@given(st.lists(st.sampled_from([b"A", b"BB", b"BTCUSDT", b"ETHUSDT", b"x" * 16]), max_size=60))
def test_factorize_is_exact(values):
    arr = np.array(values, dtype="S16")
    codes, uniq = factorize(arr)
    assert np.array_equal(uniq[codes], arr) if len(arr) else True
    assert len(uniq) == len(set(values))
    _codes2, a, _b = factorize_pair(arr, arr[::-1].copy())
    assert len(a) == len(set(zip(values, values[::-1], strict=True)))


def test_murmur2_matches_kafka_java():
    # Values from Kafka's UtilsTest.testMurmur2
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert 0 <= partition_for("binance:BTCUSDT", 4) < 4


def test_trade_value_object():
    def trade(price: str, qty: str) -> Trade:
        return Trade(
            exchange="binance",
            symbol="BTCUSDT",
            seq=1,
            exch_ts=TS,
            recv_ts=TS,
            price=Decimal(price),
            qty=Decimal(qty),
            side="sell",
        )

    b = TradeBatch.from_trades([trade("1.5", "2")])
    assert next(b.trades()) == trade("1.50000000", "2.00000000")
