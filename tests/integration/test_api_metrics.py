"""What the API exports for the alert rules: every response by route and status, and the
open sequence gaps read from the live Redis when /metrics is scraped."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from k2lib.api import create_app
from k2lib.config import K2Settings
from k2lib.ingestion.scripts import drop_prefix
from k2lib.ingestion.sequence.redis import RedisSequenceTracker
from k2lib.monitoring import new_registry
from k2lib.wire.schema import TradeBatch

pytestmark = [pytest.mark.integration, pytest.mark.hybrid]


def sample(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{name}(\{{{re.escape(want)}\}})? (\S+)$" if want else rf"^{name} (\S+)$"
    for line in text.splitlines():
        if m := re.match(pattern, line):
            return float(m.groups()[-1])
    return None


def test_responses_are_counted_by_route_and_status(k2_settings: K2Settings) -> None:
    with TestClient(create_app(k2_settings, registry=new_registry())) as client:
        before = client.get("/metrics").text
        assert sample(before, "k2_api_responses_total", endpoint="/v1/trades", status="200") == 0
        assert client.get("/v1/trades", params={"symbol": "not a name!"}).status_code == 422
        assert client.get("/no/such/path").status_code == 404
        text = client.get("/metrics").text
    assert sample(text, "k2_api_responses_total", endpoint="/v1/trades", status="422") == 1
    assert sample(text, "k2_api_responses_total", endpoint="unmatched", status="404") == 1
    assert sample(text, "k2_api_responses_total", endpoint="/metrics", status="200") == 1


def test_an_uncaught_exception_is_counted_as_the_500_it_becomes(k2_settings: K2Settings) -> None:
    app = create_app(k2_settings, registry=new_registry())

    @app.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("a bug nothing caught")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/boom").status_code == 500
        text = client.get("/metrics").text
    assert sample(text, "k2_api_responses_total", endpoint="/v1/boom", status="500") == 1


def test_open_gaps_are_read_from_redis_at_scrape_time(k2_settings: K2Settings, client) -> None:
    tracker = RedisSequenceTracker(client, prefix=k2_settings.sequence_prefix)
    seqs = [1, 2, 3, 7, 8, 20]  # two holes: 4..6 and 9..19
    batch = TradeBatch.from_columns(
        exchange=["binance"] * 6,
        symbol=["BTCUSDT"] * 6,
        seq=seqs,
        exch_ts=[1_700_000_000_000_000 + s for s in seqs],
        recv_ts=[1_700_000_000_000_000 + s for s in seqs],
        price=[1] * 6,
        qty=[1] * 6,
        side=[1] * 6,
    )
    try:
        with TestClient(create_app(k2_settings, registry=new_registry())) as api:
            assert sample(api.get("/metrics").text, "k2_sequence_open_gaps") == 0
            tracker.classify_batch(batch)
            text = api.get("/metrics").text
        assert sample(text, "k2_sequence_open_gaps") == 2
        assert sample(text, "k2_sequence_open_gap_messages") == 3 + 11
    finally:
        drop_prefix(client, k2_settings.sequence_prefix)


def test_open_gaps_are_absent_not_zero_when_redis_cannot_be_read(
    k2_settings: K2Settings,
) -> None:
    unreachable = k2_settings.with_(redis_url="redis://127.0.0.1:9/0")
    with TestClient(create_app(unreachable, registry=new_registry())) as api:
        text = api.get("/metrics").text
    assert sample(text, "k2_sequence_open_gaps") is None
    assert sample(text, "k2_api_responses_total", endpoint="/v1/gaps", status="200") == 0
