"""Notebook 03's alerts: the stack's Prometheus scrapes the live ingest and evaluates K2's
alert rules; the notebook reads an alert's state from it while the chaos runs and after.

K2's rules hold for minutes before they fire (`for: 5m` for K2Degraded), longer than the
whole notebook. So the notebook reads two rules from the same Prometheus: the real one,
unchanged from deploy/prometheus/alerts.yml, and a demo-speed copy in its own group with
the same expression and `for:` read in seconds instead of minutes (5m -> 5s). The real one
is pending while the copy fires; both resolve once the level is back to NORMAL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from k2lib.demo.context import DemoContext
from k2lib.errors import ServiceError
from k2lib.monitoring.prometheus_api import AlertState, PrometheusClient
from k2lib.stack import LocalStack
from k2lib.stack.prometheus import PrometheusService, default_rules

__all__ = ["AlertWatch", "demo_speed_rules"]

DEMO_GROUP = "k2-demo-speed"
DEMO_RULES_FILE = "demo-speed.yml"
TARGET_NAME = "notebook-live-ingest"
# Bounded waits for a state change: scrape and evaluation are every second.
FIRE_TIMEOUT_S = 60.0
RESOLVE_TIMEOUT_S = 60.0
_MINUTES = re.compile(r"^(\d+)m$")


def demo_speed_rules(names: tuple[str, ...], rules: Path | None = None) -> dict[str, Any]:
    """A rule file with the named alerts of `rules`, same expression and labels, each `for:`
    of N minutes read as N seconds, in group `k2-demo-speed`, labelled `speed: demo`."""
    groups = yaml.safe_load((rules or default_rules()).read_text())["groups"]
    found = {r["alert"]: r for g in groups for r in g["rules"] if r.get("alert") in names}
    missing = [n for n in names if n not in found]
    if missing:
        raise ServiceError(f"no alert rule named {', '.join(missing)} in deploy/prometheus")
    copies = []
    for name in names:
        rule = dict(found[name])
        match = _MINUTES.match(str(rule.get("for", "")))
        if match:
            rule["for"] = f"{match.group(1)}s"
        rule["labels"] = {**rule.get("labels", {}), "speed": "demo"}
        copies.append(rule)
    return {"groups": [{"name": DEMO_GROUP, "rules": copies}]}


@dataclass
class AlertWatch:
    """The stack's Prometheus watching one live ingest, for one alert rule."""

    ctx: DemoContext
    metrics_port: int
    alert: str = "K2Degraded"
    prometheus: PrometheusService = field(init=False)
    client: PrometheusClient = field(init=False)

    def __post_init__(self) -> None:
        self.prometheus = LocalStack(self.ctx.settings).prometheus()
        self.client = PrometheusClient(self.prometheus.config.url)

    @classmethod
    def on(cls, ctx: DemoContext, live: Any, alert: str = "K2Degraded") -> AlertWatch:
        """Watch `live` (a LiveIngest): its metrics port is added as a k2-ingest target."""
        return cls(ctx=ctx, metrics_port=int(live.server.server_address[1]), alert=alert)

    @property
    def _rules_path(self) -> Path:
        return self.prometheus.config.rules_dir / DEMO_RULES_FILE

    def start_line(self) -> str:
        self.prometheus.start()  # already running under `k2 up --monitoring`: re-reads rules
        self.prometheus.add_target("k2-ingest", TARGET_NAME, self.metrics_port)
        self._rules_path.write_text(yaml.safe_dump(demo_speed_rules((self.alert,))))
        self.prometheus.reload()
        real, demo = self._states()
        return (
            f"Prometheus ({self.prometheus.config.url}) scrapes the live ingest every second; "
            f"{self.alert} holds for {_dur(real.for_s)} in deploy/prometheus/alerts.yml, "
            f"its demo-speed copy for {_dur(demo.for_s)}"
        )

    def _states(self) -> tuple[AlertState, AlertState]:
        real = self.client.alert(self.alert, group_not=DEMO_GROUP)
        demo = self.client.alert(self.alert, group=DEMO_GROUP)
        return real, demo

    def firing_line(self, timeout_s: float = FIRE_TIMEOUT_S) -> str:
        """Wait (bounded) for the demo-speed copy to fire; both rules' states."""
        self.client.wait_for_alert(self.alert, ("firing",), timeout_s, group=DEMO_GROUP)
        return "during the chaos: " + self._line()

    def resolved_line(self, timeout_s: float = RESOLVE_TIMEOUT_S) -> str:
        """Wait (bounded) for both rules to be inactive, then stop watching."""
        try:
            self.client.wait_for_alert(self.alert, ("inactive",), timeout_s, group=DEMO_GROUP)
            self.client.wait_for_alert(self.alert, ("inactive",), timeout_s, group_not=DEMO_GROUP)
            return "after it: " + self._line()
        finally:
            self.close()

    def _line(self) -> str:
        real, demo = self._states()
        return (
            f"{self.alert} (for {_dur(real.for_s)}): {real.state}; "
            f"demo-speed copy (for {_dur(demo.for_s)}): {demo.state}"
        )

    def close(self) -> None:
        """Remove the target and the demo-speed rules: the stack's Prometheus as it was."""
        self.prometheus.remove_target("k2-ingest", TARGET_NAME)
        self._rules_path.unlink(missing_ok=True)
        self.prometheus.reload()


def _dur(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds >= 60 else f"{seconds:g}s"
