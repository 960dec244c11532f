"""An outside consumer: kafka-python and the ten-line `struct` decoder of
docs/wire-format.md read what K2's publisher wrote, on the live broker."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from k2lib.config import K2Settings
from k2lib.feeds.binance import BinanceCapture
from k2lib.feeds.publisher import replay
from k2lib.wire.partitioner import partition_for
from k2lib.wire.schema import TradeBatch, format_decimal

pytestmark = [pytest.mark.integration]

kafka = pytest.importorskip("kafka", reason="kafka-python not installed (pip install -e .[dev])")

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "data" / "spot_ethusdt_20240808.gz"  # 6,106 real trades, one key


def doc_decoder() -> Any:
    text = (ROOT / "docs" / "wire-format.md").read_text()
    section = text[text.index("\n## A decoder in ten lines") :]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match
    namespace: dict[str, Any] = {}
    exec(match.group(1), namespace)
    return namespace["decode"]


def test_kafka_python_and_the_doc_decoder_read_k2s_topic(k2_settings: K2Settings) -> None:
    decode = doc_decoder()
    source = TradeBatch.concat(list(BinanceCapture(CAPTURE).batches()))
    summary = replay(BinanceCapture(CAPTURE), k2_settings)
    assert summary["delivered"] == len(source) == 6_106

    consumer = kafka.KafkaConsumer(
        k2_settings.topic,
        bootstrap_servers=k2_settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,  # read until idle: the broker's ListOffsets is not trusted
    )
    try:
        messages = []
        for message in consumer:
            messages.append(message)
            if len(messages) == len(source):
                break
    finally:
        consumer.close()

    assert len(messages) == len(source)
    key = b"binance:ETHUSDT"
    assert {m.key for m in messages} == {key}
    assert {m.partition for m in messages} == {partition_for(key, k2_settings.partitions)}
    trades = [decode(m.value) for m in messages]
    assert [t["seq"] for t in trades] == source.seq.tolist()  # one key: publish order
    for i, trade in enumerate(trades):
        assert trade["price"] == Decimal(format_decimal(int(source.price[i])))
        assert trade["qty"] == Decimal(format_decimal(int(source.qty[i])))
        assert trade["exch_ts_us"] == int(source.exch_ts[i])
        assert trade["side"] == ("unknown", "buy", "sell")[int(source.side[i])]
        assert (trade["exchange"], trade["symbol"]) == ("binance", "ETHUSDT")
