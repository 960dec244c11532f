"""The notebook's demo-speed alert copies: the real expression, `for:` minutes read as
seconds, and a rule file promtool accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from k2lib.demo.stories.alerts import DEMO_GROUP, demo_speed_rules
from k2lib.errors import ServiceError
from k2lib.stack.prometheus import PrometheusConfig, default_rules

pytestmark = [pytest.mark.unit]


def _real(name: str) -> dict:
    groups = yaml.safe_load(default_rules().read_text())["groups"]
    return next(r for g in groups for r in g["rules"] if r["alert"] == name)


def test_a_copy_keeps_the_expression_and_reads_minutes_as_seconds() -> None:
    rules = demo_speed_rules(("K2Degraded", "K2CommitFailures"))
    (group,) = rules["groups"]
    degraded, commits = group["rules"]
    assert group["name"] == DEMO_GROUP
    assert degraded["expr"] == _real("K2Degraded")["expr"]
    assert _real("K2Degraded")["for"] == "5m" and degraded["for"] == "5s"
    assert degraded["labels"] == {**_real("K2Degraded")["labels"], "speed": "demo"}
    assert "for" not in commits  # a rule without `for:` fires at once, as the real one


def test_an_unknown_alert_is_a_clear_error() -> None:
    with pytest.raises(ServiceError, match="K2NoSuchAlert"):
        demo_speed_rules(("K2Degraded", "K2NoSuchAlert"))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_copies_and_the_generated_config(tmp_path: Path) -> None:
    path = tmp_path / "demo-speed.yml"
    path.write_text(yaml.safe_dump(demo_speed_rules(("K2Degraded", "K2BreakerOpen"))))
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = PrometheusConfig(home=tmp_path, state_dir=tmp_path / "run", ingest_port=9464)
    config.rules_dir.mkdir(parents=True)
    (config.rules_dir / "alerts.yml").write_text(default_rules().read_text())
    config.config_path.write_text(yaml.safe_dump(config.scrape_config()))
    checked = subprocess.run(
        ["promtool", "check", "config", str(config.config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
