"""The REST API over real HTTP: `k2 api` in a subprocess, uvicorn servers in threads with an
injected degradation manager, and schemathesis fuzzing the OpenAPI schema for 500s."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from k2lib.api import create_app
from k2lib.config import K2Settings
from k2lib.connect import create_topics, load_k2_catalog
from k2lib.monitoring.metrics import new_registry
from k2lib.query.testing import ingest_prefix, produce, synthetic_trades
from k2lib.resilience.levels import DegradationLevel
from k2lib.resilience.manager import DegradationManager
from k2lib.resilience.spill import DeferredSpill, spill_directory
from k2lib.storage.table import ensure_table

pytestmark = [pytest.mark.integration, pytest.mark.hybrid, pytest.mark.phase2]

MIN = 60_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api_settings(stack_settings: K2Settings) -> K2Settings:
    """A topic with 6k trades over the last 20 minutes, the first half of it ingested."""
    tag = uuid.uuid4().hex[:10]
    settings = stack_settings.with_(
        topic=f"test.api.{tag}", dlq_topic=f"test.api.{tag}.dlq", table=f"test.api_{tag}"
    )
    create_topics(settings, {settings.topic: settings.partitions, settings.dlq_topic: 1})
    now = time.time_ns() // 1000
    produce(
        settings,
        settings.topic,
        synthetic_trades(6_000, start_us=now - 20 * MIN, span_us=20 * MIN, seed=11),
    )
    ingest_prefix(settings, ensure_table(load_k2_catalog(settings), settings.table), 0.5)
    return settings


class ThreadServer:
    """uvicorn on a free loopback port, in this process, so the test can hold the manager."""

    def __init__(self, settings: K2Settings, manager: DegradationManager) -> None:
        self.port = free_port()
        app = create_app(settings, manager=manager, registry=new_registry())
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def manager() -> DegradationManager:
    return DegradationManager()


@pytest.fixture(scope="module")
def base_url(api_settings: K2Settings, manager: DegradationManager) -> Iterator[str]:
    with ThreadServer(api_settings, manager) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


def test_k2_api_serves_over_http(api_settings: K2Settings) -> None:
    port = free_port()
    env = {
        **os.environ,
        "K2_HOME": str(api_settings.home),
        "K2_TOPIC": api_settings.topic,
        "K2_TABLE": api_settings.table,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "k2lib.cli.main", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/openapi.json", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "k2 api did not come up"
                time.sleep(0.2)
        # HIGH priority: the shared dev stack's ingest may publish a degraded level.
        r = httpx.get(
            f"{url}/v1/trades",
            params={"symbol": "BTCUSDT", "start": "now-30m", "priority": "high"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.json()["rows"] and "provenance" in r.json()
    finally:
        proc.terminate()
        proc.wait(10)


def test_trades_come_back_once_with_provenance(client: httpx.Client) -> None:
    r = client.get(
        "/v1/trades",
        params={"symbol": "BTCUSDT", "exchange": "binance", "start": "now-30m", "end": "now"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    rows, prov = body["rows"], body["provenance"]
    assert len({(x["exchange"], x["symbol"], x["seq"]) for x in rows}) == len(rows) > 100
    assert {x["source"] for x in rows} == {"iceberg", "kafka"}
    assert prov["mode"] == "offset" and prov["partial"] is False
    assert prov["rows_by_source"]["iceberg"] + prov["rows_by_source"]["kafka"] == len(rows)
    assert [x["exch_ts"] for x in rows] == sorted(x["exch_ts"] for x in rows)
    assert rows[0]["price"].count(".") == 1 and len(rows[0]["price"].split(".")[1]) == 8


def test_a_corrupt_spill_file_is_skipped_not_a_500(
    api_settings: K2Settings, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The table's spill (per topic and table) holds one intact and one garbage file."""
    q = {"symbol": "BTCUSDT", "exchange": "binance", "start": "now-30m", "end": "now"}
    before = client.get("/v1/trades", params=q)
    assert before.status_code == 200, before.text
    directory = spill_directory(api_settings)
    spill = DeferredSpill(directory)
    shed = synthetic_trades(
        5,
        start_us=time.time_ns() // 1000 - 10 * MIN,
        span_us=MIN,
        symbols=["BTCUSDT"],
        first_seq={"BTCUSDT": 10**9},
        seed=12,
    )
    spill.append(shed.to_arrow())
    bad = spill.append(shed.to_arrow())
    assert bad is not None
    (directory / bad).write_bytes(b"\x00\xff garbage, not an Arrow stream" * 30)
    try:
        with caplog.at_level(logging.WARNING, logger="k2lib.resilience.spill"):
            r = client.get("/v1/trades", params=q)
        assert r.status_code == 200, r.text
        rows, prov = r.json()["rows"], r.json()["provenance"]
        table_rows = [x for x in rows if x["source"] != "spill"]
        assert table_rows == before.json()["rows"] and len(table_rows) > 100
        assert sorted(x["seq"] for x in rows if x["source"] == "spill") == sorted(shed.seq)
        assert prov["rows_by_source"]["spill"] == 5 and prov["deferred_files"] == 1
        assert (directory / bad).exists()  # the query never moves the ingest's files
        assert any(str(directory / bad) in m for m in caplog.messages)
    finally:
        shutil.rmtree(directory.parent)


def test_recent_with_limit_keeps_the_newest(client: httpx.Client) -> None:
    full = client.get("/v1/trades/recent", params={"symbol": "ETHUSDT", "window_minutes": 30})
    top = client.get(
        "/v1/trades/recent", params={"symbol": "ETHUSDT", "window_minutes": 30, "limit": 5}
    )
    assert full.status_code == top.status_code == 200
    assert [r["seq"] for r in top.json()["rows"]] == [r["seq"] for r in full.json()["rows"]][-5:]


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({}, 422, "symbol"),
        ({"symbol": "X" * 17}, 422, "symbol"),
        ({"symbol": "BTCUSDT", "start": "soon"}, 400, "cannot read time 'soon'"),
        ({"symbol": "BTCUSDT", "start": "now", "end": "now-1h"}, 400, "before end"),
        ({"symbol": "BTCUSDT", "start": "2024-01-01T00:00:00"}, 400, "no UTC offset"),
        # past Python's int-string limit: a 500 once, a clear 400 now
        ({"symbol": "BTCUSDT", "start": "1" * 4_301}, 400, "characters long"),
        ({"symbol": "BTCUSDT", "end": "now-" + "9" * 5_000 + "m"}, 400, "characters long"),
        ({"symbol": "BTCUSDT", "limit": 0}, 422, "limit"),
        ({"symbol": "BTCUSDT", "source": "both"}, 422, "source"),
        ({"symbol": "BTCUSDT", "priority": "urgent"}, 422, "priority"),
    ],
)
def test_bad_parameters_are_4xx_with_a_reason(
    client: httpx.Client, params: dict[str, object], status: int, fragment: str
) -> None:
    r = client.get("/v1/trades", params=params)
    assert r.status_code == status and fragment in r.text, r.text


def test_health_degradation_gaps_and_metrics(client: httpx.Client) -> None:
    health = client.get("/v1/health").json()
    assert health["status"] == "ok", health
    assert set(health["checks"]) == {"broker", "redis", "catalog"}
    level = client.get("/v1/degradation").json()
    assert level["level"] == "NORMAL" and level["source"] == "manager"
    gaps = client.get("/v1/gaps")
    assert gaps.status_code in (200, 501) and ("gaps" in gaps.json() or "error" in gaps.json())
    client.get("/v1/trades", params={"symbol": "SOLUSDT"})
    metrics = client.get("/metrics").text
    assert 'k2_query_requests_total{endpoint="/v1/trades",source="hybrid",status="200"}' in metrics
    assert "k2_query_latency_seconds_bucket" in metrics and "k2_query_rows_total" in metrics


def test_admission_follows_the_degradation_level(
    client: httpx.Client, manager: DegradationManager
) -> None:
    q = {"symbol": "BTCUSDT", "start": "now-30m"}
    try:
        manager.force(DegradationLevel.GRACEFUL)
        low = client.get("/v1/trades", params={**q, "priority": "low"})
        assert low.status_code == 503 and low.headers["Retry-After"] == "5", low.text
        assert client.get("/v1/trades", params=q).status_code == 200
        manager.force(DegradationLevel.CIRCUIT_BREAK)
        assert client.get("/v1/trades", params=q).status_code == 503
        high = client.get("/v1/trades", params={**q, "priority": "high"})
        assert high.status_code == 200, high.text
        prov = high.json()["provenance"]
        assert prov["source"] == "historical" and prov["requested_source"] == "hybrid"
        assert "Iceberg only" in prov["warnings"][0]
        real = client.get("/v1/trades", params={**q, "priority": "high", "source": "realtime"})
        assert real.status_code == 503 and int(real.headers["Retry-After"]) == 30
        assert client.get("/v1/degradation").json()["level"] == "CIRCUIT_BREAK"
        assert 'k2_query_rejected_total{priority="low"} 1.0' in client.get("/metrics").text
    finally:
        manager.force(None)
        manager.force(DegradationLevel.NORMAL)
        manager.force(None)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_get_a_500(base_url: str, mode: GenerationMode) -> None:
    # Driven through hypothesis directly: schemathesis' pytest loader does not run on
    # pytest 9 (`Function._nodeid`), and this bounds the examples per operation anyway.
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    fuzzed = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode is GenerationMode.NEGATIVE and not list(operation.iter_parameters()):
            continue  # nothing to make invalid
        fuzzed += 1

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base_url, checks=checks)

        fuzz()
    assert fuzzed >= (2 if mode is GenerationMode.NEGATIVE else 6)
