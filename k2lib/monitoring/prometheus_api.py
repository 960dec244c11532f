"""Reading a running Prometheus over its HTTP API: instant queries and alert states.

Used by the dashboard test (every Grafana query must return a series) and by notebook 03
(an alert pending, firing and resolved, read from the stack's Prometheus).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from k2lib.errors import ServiceError

__all__ = ["AlertState", "PrometheusClient"]

# An alert Prometheus does not list under /api/v1/alerts is neither pending nor firing.
INACTIVE = "inactive"


@dataclass(frozen=True, slots=True)
class AlertState:
    """One alert rule as Prometheus evaluates it now: the most advanced state of its
    instances (firing > pending > inactive) and how many instances are in it."""

    name: str
    state: str
    instances: int
    for_s: float

    def line(self) -> str:
        if self.state == INACTIVE:
            return f"{self.name}: inactive"
        return f"{self.name}: {self.state}"


class PrometheusClient:
    """Prometheus's /api/v1 on one base URL (an injected httpx client, an injected clock)."""

    def __init__(
        self,
        url: str,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.http = http or httpx.Client(timeout=5.0)
        self.clock = clock
        self.sleep = sleep

    def _get(self, path: str, **params: str) -> Any:
        try:
            response = self.http.get(f"{self.url}{path}", params=params)
        except httpx.HTTPError as exc:
            raise ServiceError(f"prometheus at {self.url} cannot be reached: {exc}") from exc
        body = response.json() if response.content else {}
        if response.status_code != 200 or body.get("status") != "success":
            raise ServiceError(
                f"prometheus rejected {path} {params}: {body.get('error', response.text[:200])}"
            )
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's series (vector results; a scalar is one series)."""
        data = self._get("/api/v1/query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def alert(
        self, name: str, *, group: str | None = None, group_not: str | None = None
    ) -> AlertState:
        """The state of alert rule `name` in the rules Prometheus has loaded (in rule
        group `group`, or in any group but `group_not`: one name may be in two groups)."""
        for g in self._get("/api/v1/rules", type="alert")["groups"]:
            if (group is not None and g["name"] != group) or g["name"] == group_not:
                continue
            for rule in g["rules"]:
                if rule["name"] == name:
                    return _state(rule)
        raise ServiceError(f"prometheus at {self.url} has no alert rule named {name!r}")

    def wait_for_alert(
        self,
        name: str,
        states: tuple[str, ...],
        timeout_s: float,
        *,
        group: str | None = None,
        group_not: str | None = None,
    ) -> AlertState:
        """Poll until alert `name` is in one of `states`; the last state seen at the timeout."""
        deadline = self.clock() + timeout_s
        while True:
            seen = self.alert(name, group=group, group_not=group_not)
            if seen.state in states or self.clock() >= deadline:
                return seen
            self.sleep(0.5)


def _state(rule: dict[str, Any]) -> AlertState:
    alerts = rule.get("alerts") or []
    states = [a["state"] for a in alerts]
    state = next((s for s in ("firing", "pending") if s in states), INACTIVE)
    return AlertState(
        name=rule["name"],
        state=state,
        instances=states.count(state) if state != INACTIVE else 0,
        for_s=float(rule.get("duration", 0)),
    )
