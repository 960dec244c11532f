"""docs/wire-format.md against the code: its layout table, its example bytes and its
ten-line `struct` decoder, run on records K2 encodes."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k2lib.config import DEFAULT_PARTITIONS, DEFAULT_TOPIC
from k2lib.feeds.binance import BinanceCapture
from k2lib.wire.codec import MAX_TS_US, MIN_TS_US, RECORD_DTYPE, decode_batch, encode_batch
from k2lib.wire.partitioner import partition_for
from k2lib.wire.schema import MAX_DECIMAL_INT, SIDE_NAMES, TradeBatch, format_decimal

pytestmark = [pytest.mark.unit]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "wire-format.md"
SAMPLE = ROOT / "data" / "spot_btcusdt_20240808.gz"


def doc_section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n{title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def code_block(section: str, lang: str) -> str:
    match = re.search(rf"```{lang}\n(.*?)```", section, flags=re.S)
    assert match, f"no {lang} block"
    return match.group(1)


def doc_decoder() -> Any:
    namespace: dict[str, Any] = {}
    exec(code_block(doc_section("## A decoder in ten lines"), "python"), namespace)
    return namespace["decode"]


decode = doc_decoder()


def expected(batch: TradeBatch, i: int) -> dict[str, Any]:
    return {
        "exchange": batch.exchange[i].decode(),
        "symbol": batch.symbol[i].decode(),
        "seq": int(batch.seq[i]),
        "exch_ts_us": int(batch.exch_ts[i]),
        "recv_ts_us": int(batch.recv_ts[i]),
        "side": SIDE_NAMES[int(batch.side[i])] or "unknown",
        "price": Decimal(format_decimal(int(batch.price[i]))),
        "qty": Decimal(format_decimal(int(batch.qty[i]))),
    }


def test_the_decoder_is_ten_lines_of_the_standard_library() -> None:
    code = code_block(doc_section("## A decoder in ten lines"), "python")
    lines = [ln for ln in code.splitlines() if ln.strip()]
    assert len(lines) <= 10
    imports = {m for ln in lines for m in re.findall(r"^(?:from|import) (\w+)", ln)}
    assert imports <= {"struct", "decimal"}


def test_the_layout_table_is_the_codec_dtype() -> None:
    rows = re.findall(r"^\| (\d+) \| (\d+) \| (\w+) \|", doc_section("## The record"), re.M)
    table = [(name, int(off), int(width)) for off, width, name in rows]
    dtype = [
        (name, RECORD_DTYPE.fields[name][1], RECORD_DTYPE.fields[name][0].itemsize)
        for name in RECORD_DTYPE.names
    ]
    assert table == dtype
    assert sum(w for _, _, w in table) == RECORD_DTYPE.itemsize == 76
    assert all(RECORD_DTYPE.fields[n][0].byteorder in "<|=" for n in RECORD_DTYPE.names)


def test_the_topic_table_is_the_default_settings() -> None:
    topic = doc_section("## The topic")
    assert f"`{DEFAULT_TOPIC}` (`K2_TOPIC`)" in topic
    assert f"`{DEFAULT_TOPIC}.dlq`" in topic
    assert f"{DEFAULT_PARTITIONS} by default" in topic


def test_the_example_bytes_are_the_first_sample_trade() -> None:
    batch = next(BinanceCapture(SAMPLE, limit=1).batches())
    dump = code_block(doc_section("### Example"), "text")
    value = bytes.fromhex("".join(ln.split(None, 1)[1] for ln in dump.splitlines()))
    assert value == encode_batch(batch)[0]
    assert decode(value) == expected(batch, 0)
    assert decode(value)["price"] == Decimal("61837.63") and decode(value)["side"] == "sell"


def test_the_decoder_reads_every_trade_of_a_real_capture() -> None:
    batch = TradeBatch.concat(list(BinanceCapture(SAMPLE).batches()))
    values = encode_batch(batch)
    assert len(values) == 9_757
    for i, value in enumerate(values):
        assert decode(value) == expected(batch, i)


NAMES = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)


@settings(max_examples=200, deadline=None)
@given(
    exchange=NAMES.filter(lambda s: len(s) <= 16),
    symbol=NAMES.filter(lambda s: len(s) <= 16),
    seq=st.integers(0, 2**53 - 1),
    ts=st.integers(MIN_TS_US, MAX_TS_US - 1),
    price=st.integers(1, MAX_DECIMAL_INT),
    qty=st.integers(1, MAX_DECIMAL_INT),
    side=st.integers(0, 2),
)
def test_the_decoder_agrees_with_k2_on_any_valid_record(
    exchange: str, symbol: str, seq: int, ts: int, price: int, qty: int, side: int
) -> None:
    batch = TradeBatch.from_columns(
        exchange=[exchange],
        symbol=[symbol],
        seq=[seq],
        exch_ts=[ts],
        recv_ts=[ts],
        price=[price],
        qty=[qty],
        side=[side],
    )
    (value,) = encode_batch(batch)
    assert decode_batch([value]).rejects == []  # K2 accepts it...
    assert decode(value) == expected(batch, 0)  # ...and the doc's decoder reads it the same


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v[:-1],  # wrong length
        lambda v: v + b"\0",
        lambda v: b"K3" + v[2:],  # bad magic
        lambda v: v[:2] + b"\x02" + v[3:],  # a version this decoder does not know
        lambda v: b"",
    ],
)
def test_the_decoder_refuses_what_k2_refuses(mangle: Any) -> None:
    batch = next(BinanceCapture(SAMPLE, limit=1).batches())
    bad = mangle(encode_batch(batch)[0])
    assert len(decode_batch([bad]).rejects) == 1
    with pytest.raises(ValueError, match="not a K2 v1 record"):
        decode(bad)


def test_the_partitioner_is_kafka_pythons_default() -> None:
    # kafka-python's own murmur2, and its DefaultPartitioner's rule for keyed messages
    default = pytest.importorskip("kafka.partitioner.default", reason="kafka-python not installed")
    rng = np.random.default_rng(7)
    keys = [b"binance:BTCUSDT", b"binance-usdm:BTCUSDT", b"binance:ETHUSDT", b""]
    keys += [bytes(rng.integers(0, 256, int(n), dtype=np.uint8)) for n in rng.integers(1, 40, 300)]
    for key in keys:
        for partitions in (1, 4, 7, 64):
            theirs = (default.murmur2(key) & 0x7FFFFFFF) % partitions
            assert partition_for(key, partitions) == theirs, key
