"""What the API exports for alerting: every HTTP response by route and status, and the
open sequence gaps read from Redis at scrape time.

`k2_query_requests` counts the query endpoints only, as the handler sees them. The alert
rules need every response, including the ones no handler chose: a 422 from validation, a
500 from an exception nothing caught. `ResponseCounter` counts at the ASGI layer, so those
are included.

Open gaps live in Redis, shared by every ingest process, and outlive them; a per-process
counter cannot say how many are open now. `OpenGapsCollector` reads the tracker's index
(one SMEMBERS and one MGET, as `k2 gaps` does) when Prometheus scrapes the API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from k2lib.ingestion.sequence.gaps import list_gaps

__all__ = ["OpenGapsCollector", "ResponseCounter", "response_counter"]

log = logging.getLogger("k2.api")

UNMATCHED = "unmatched"  # one label for every path no route serves: bounded cardinality
ASGIApp = Callable[..., Any]


def response_counter(registry: CollectorRegistry, paths: list[str]) -> Counter:
    """`k2_api_responses_total{endpoint, status}`, with each route's 200 at 0 from the start
    so that a ratio of error responses has a denominator before the first request."""
    counter = Counter(
        "k2_api_responses",
        "HTTP responses sent, by route template and status code",
        ["endpoint", "status"],
        registry=registry,
    )
    for path in paths:
        counter.labels(path, "200")
    return counter


class ResponseCounter:
    """ASGI middleware: count each HTTP response once, by route template and status.

    An exception that escapes the app before any response started is counted as the 500
    the server error handler then sends.
    """

    def __init__(self, app: ASGIApp, *, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # the router records the matched route in the scope it was handed
            route = getattr(scope.get("route"), "path", None)
            self.counter.labels(route or UNMATCHED, str(status)).inc()


class OpenGapsCollector(Collector):
    """`k2_sequence_open_gaps` and `k2_sequence_open_gap_messages`, read at scrape time.

    When Redis cannot be read the two series are left out of the scrape (Prometheus then
    sees them absent, which the alert rules treat apart) rather than reported as 0.
    """

    def __init__(self, client_factory: Callable[[], Any], prefix: str) -> None:
        self._factory = client_factory
        self._client: Any = None
        self.prefix = prefix

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # unchecked: collecting at registration would read Redis

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            if self._client is None:
                self._client = self._factory()
            rows = list_gaps(self._client, self.prefix)
        except Exception as exc:  # any Redis failure: no sample, and the scrape goes on
            log.warning("open gaps not exported: cannot read Redis: %s", exc)
            return
        yield GaugeMetricFamily(
            "k2_sequence_open_gaps", "Open sequence gaps in Redis, all symbols", value=len(rows)
        )
        missing = sum(r["last"] - r["first"] + 1 for r in rows)
        yield GaugeMetricFamily(
            "k2_sequence_open_gap_messages",
            "Sequence numbers inside the open gaps in Redis",
            value=missing,
        )
