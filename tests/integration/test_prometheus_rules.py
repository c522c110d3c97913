"""Ubiq's alerting rules and sample Prometheus configuration, checked and unit-tested by promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.procs import require_binary

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "rules" / "ubiq.rules.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=DEPLOY,
    )


def test_rules_pass_promtool_check() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 17 rules found" in checked.stdout


def test_rules_unit_tests_pass() -> None:
    """Every alert fires when it should, with its labels and annotations, and not before."""
    tests = sorted((DEPLOY / "tests").glob("*.yml"))
    assert tests
    ran = promtool("test", "rules", *map(str, tests))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "SUCCESS" in ran.stdout


def test_every_alert_has_a_unit_test_and_a_doc_entry() -> None:
    import yaml

    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tested = (DEPLOY / "tests" / "ubiq.rules.test.yml").read_text()
    docs = (Path(__file__).parents[2] / "docs" / "observability.md").read_text()
    for alert in alerts:
        assert f"alertname: {alert}" in tested, f"{alert} has no promtool unit test"
        assert f"`{alert}`" in docs, f"{alert} is not explained in docs/observability.md"


def test_sample_configuration_passes_promtool() -> None:
    checked = promtool("check", "config", str(DEPLOY / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
