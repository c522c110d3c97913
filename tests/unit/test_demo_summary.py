"""The demo's closing "where to look" block, as `make demo` prints it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from controlplane.demo.summary import DemoPlaces, where_to_look
from tests.support import demo

PLACES = DemoPlaces(
    api="http://127.0.0.1:8081",
    token="tok-123",
    token_file=Path("/tmp/d/api-tokens"),
    prometheus="http://127.0.0.1:9090",
    dashboards=Path("/tmp/d/grafana-dashboards"),
    dashboard_files=5,
)


def test_every_place_is_named_with_its_address() -> None:
    text = where_to_look(PLACES, keep_running=True)
    assert demo.where_to_look(text) == {
        "API": "http://127.0.0.1:8081",
        "API token": "tok-123",
        "Prometheus": "http://127.0.0.1:9090",
        "Dashboards": "/tmp/d/grafana-dashboards",
    }
    assert "--token-file /tmp/d/api-tokens" in text and "5 Grafana dashboards" in text
    assert text.endswith("All of it runs until Ctrl-C.")


def test_a_demo_that_ends_says_how_to_keep_it_up_and_a_missing_prometheus_says_why() -> None:
    text = where_to_look(replace(PLACES, prometheus=None), keep_running=False)
    assert "Prometheus  not running" in text and "apt-get install prometheus" in text
    assert "make demo DEMO_ARGS=--keep-running" in text
    assert "python -m controlplane.observability.dashboards -o DIR" in text
