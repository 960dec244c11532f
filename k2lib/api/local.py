"""The REST API on a loopback port inside this process, for a notebook or a test to call
over real HTTP: `serve_local(settings)` -> LocalAPI with its `url`.

It is the app `k2 api` serves (the same `create_app`), run by uvicorn in a daemon thread on
a free 127.0.0.1 port, so a notebook shows the REST layer without a second terminal. An
engine passed in is shared, not closed: the notebook's own queries and the HTTP ones then
read the same pinned table.
"""

from __future__ import annotations

import atexit
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from k2lib.api.app import create_app
from k2lib.config import K2Settings
from k2lib.errors import K2Error
from k2lib.monitoring.metrics import new_registry
from k2lib.query import HybridQueryEngine
from k2lib.query.timeparse import format_micros

__all__ = ["LocalAPI", "serve_local", "trades_line", "window_params"]

START_TIMEOUT_S = 20.0
MINUTE_US = 60_000_000


class LocalAPIError(K2Error):
    """The in-process API did not start."""


@dataclass
class LocalAPI:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve_local(settings: K2Settings, *, engine: HybridQueryEngine | None = None) -> LocalAPI:
    """Start the API on a free loopback port; returns once it answers. Stopped at exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    app = create_app(settings, engine=engine, registry=new_registry())
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"k2-api-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise LocalAPIError(f"the API did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    api = LocalAPI(f"http://127.0.0.1:{port}", server, thread)
    atexit.register(api.close)
    return api


def window_params(
    symbol: str, *, end_us: int, minutes: int, exchange: str | None = None
) -> dict[str, str]:
    """`/v1/trades` parameters for the `minutes` before `end_us`, as ISO-8601 times."""
    params = {
        "symbol": symbol,
        "start": format_micros(end_us - minutes * MINUTE_US),
        "end": format_micros(end_us),
    }
    return params | ({"exchange": exchange} if exchange else {})


def trades_line(response: httpx.Response) -> str:
    """`GET <url> -> 200: N rows = a from Iceberg + b from Kafka` (or the error body)."""
    request = response.request
    path = urllib.parse.unquote(request.url.raw_path.decode())  # readable times in the line
    where = f"GET {request.url.host}:{request.url.port}{path}"
    body: Any = response.json()
    if response.status_code != 200:
        return f"{where} -> {response.status_code}: {body.get('error')}: {body.get('detail')}"
    by_source = body["provenance"]["rows_by_source"]
    return (
        f"{where} -> 200: {len(body['rows']):,} rows = {by_source.get('iceberg', 0):,} from "
        f"Iceberg + {by_source.get('kafka', 0):,} from Kafka, "
        f"seam {body['provenance']['mode']}"
    )
