"""environment.yml stays in step with pyproject.toml; the README keeps its two commands."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit]
ROOT = Path(__file__).resolve().parents[2]


def test_environment_yml_lists_every_pyproject_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for _extra, deps in project["optional-dependencies"].items():
        wanted += [d for d in deps if not d.startswith("k2lib")]
    env_lines = {
        line.strip().lstrip("- ").strip()
        for line in (ROOT / "environment.yml").read_text().splitlines()
    }
    missing = [d for d in wanted if d not in env_lines]
    assert not missing, f"environment.yml is missing {missing}"


def test_readme_names_the_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
