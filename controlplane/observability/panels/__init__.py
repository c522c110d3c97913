"""What Ubiq's Grafana dashboards show: every panel's PromQL, as data (pure).

``model`` is the shape (queries, panels, rows, variables, annotations), ``promql`` the shared
building blocks, and one module per dashboard. ``controlplane.observability.dashboards`` lays
them out and renders them; the live test runs every query against a real Prometheus.
"""

from __future__ import annotations

from controlplane.observability.panels.control_plane import control_plane
from controlplane.observability.panels.gtm import gtm
from controlplane.observability.panels.mesh import mesh_overview
from controlplane.observability.panels.model import (
    CONTRACT_METRICS,
    Annotation,
    Dashboard,
    Panel,
    Query,
    Row,
    Variable,
    metric_names,
)
from controlplane.observability.panels.placement import placement
from controlplane.observability.panels.service import service_detail

__all__ = [
    "CONTRACT_METRICS",
    "Annotation",
    "Dashboard",
    "Panel",
    "Query",
    "Row",
    "Variable",
    "all_dashboards",
    "metric_names",
]


def all_dashboards() -> tuple[Dashboard, ...]:
    return (mesh_overview(), service_detail(), gtm(), control_plane(), placement())
