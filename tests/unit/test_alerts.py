"""The alert rules: valid for promtool, unit-tested by promtool, each with a runbook, and
naming only metrics K2 exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.unit]

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "alerts.yml"
RULE_TESTS = PROM / "alerts_test.yml"
RUNBOOKS = ROOT / "docs" / "operations" / "runbooks.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (scripts/system-deps.sh installs Debian's prometheus)",
)
# Series Prometheus makes itself, not K2.
PROMETHEUS_SERIES = {"up"}
# PromQL words that look like metric names in an expression.
PROMQL_WORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "bool"}


def _alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROM, capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_promtool_checks_the_rules_and_the_config() -> None:
    rules = _promtool("check", "rules", RULES.name)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in rules.stdout
    config = _promtool("check", "config", "prometheus.yml")  # which loads alerts.yml
    assert config.returncode == 0, config.stdout + config.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = _promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_has_a_firing_case_in_the_rule_tests() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert {rule["alert"] for rule in _alerts()} <= firing


def test_every_rule_links_a_runbook_section_that_exists() -> None:
    headings = re.findall(r"^## (\S+)$", RUNBOOKS.read_text(), flags=re.M)
    anchors = {h.lower() for h in headings}
    for rule in _alerts():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert (ROOT / path).resolve() == RUNBOOKS.resolve(), url
        assert anchor == rule["alert"].lower() and anchor in anchors, url
        assert rule["labels"]["severity"] in {"warning", "critical"}
    assert sorted(headings) == sorted(rule["alert"] for rule in _alerts())


def _exported() -> set[str]:
    """Every series name K2's code can export, from its metric constructors."""
    names: set[str] = set()
    pattern = re.compile(r"\b(Counter|counter|Gauge|Histogram|GaugeMetricFamily)\(\s*\"(k2_\w+)\"")
    for path in (ROOT / "k2lib").rglob("*.py"):
        for kind, name in pattern.findall(path.read_text()):
            if kind.lower() == "counter":
                names.add(name if name.endswith("_total") else f"{name}_total")
            elif kind == "Histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            else:
                names.add(name)
    return names


def test_rules_name_only_metrics_k2_exports() -> None:
    exported = _exported()
    assert "k2_api_responses_total" in exported and "k2_sequence_open_gaps" in exported
    for rule in _alerts():
        expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", rule["expr"])
        words = set(re.findall(r"\b[a-z_][a-z0-9_]*\b(?!\s*\()", expr)) - PROMQL_WORDS
        metrics = {w for w in words if w.startswith("k2_") or w in PROMETHEUS_SERIES}
        assert metrics, rule["alert"]
        assert metrics <= exported | PROMETHEUS_SERIES, (rule["alert"], metrics - exported)
