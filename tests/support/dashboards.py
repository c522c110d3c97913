"""Dashboard queries as Grafana sends them (template variables substituted), run against a real
Prometheus. The live tests of panels (tests/e2e/test_observability.py) and of the decision
annotations (tests/e2e/test_feedback_*.py, where decisions are made) share these."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from controlplane.observability.panels import all_dashboards
from controlplane.observability.panels.model import Annotation
from controlplane.prometheus.process import PrometheusProcess, wait_for_series
from tests.support.mesh import GTM_NAME

# what a Grafana user would pick; $__rate_interval as Grafana computes it for a 1 s scrape, rounded up
VALUES = {
    "service": "checkout",
    "region": "eu-west|us-west",
    "name": GTM_NAME,
    "canary": ".*",
    "__rate_interval": "15s",
    "__interval": "5s",
    "__range": "5m",
}


def substitute(expr: str, values: Mapping[str, str] = VALUES) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return values[name] if name in values else match.group(0)

    return re.sub(r"\$([A-Za-z_]\w*)", value, expr)


def decision_annotations() -> dict[str, Annotation]:
    """The annotations that mark the loop's decisions (they read ``CONTRACT_METRICS``), by name."""
    return {a.name: a for d in all_dashboards() for a in d.annotations if a.pending}


def title_labels(annotation: Annotation) -> set[str]:
    """The series labels the annotation's title shows (``{{cluster}}``)."""
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", annotation.title))


def prove_annotation(
    prom: PrometheusProcess, name: str, timeout: float = 20, **values: str
) -> list[dict[str, Any]]:
    """Run annotation ``name``'s query as Grafana would (``values`` override ``VALUES``) until it
    marks something, and check every mark carries the labels its title shows."""
    annotation = decision_annotations()[name]
    series = wait_for_series(prom, substitute(annotation.expr, {**VALUES, **values}), timeout)
    for s in series:
        missing = title_labels(annotation) - set(s["metric"])
        assert not missing, f"{name}: {s['metric']} lacks {missing} for {annotation.title!r}"
    return series
