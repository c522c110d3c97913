"""The shape of a dashboard as data: queries, panels, rows, variables, annotations (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Metrics the placement and canary controllers export (the contract the dashboards read).
#: Only the feedback loop (``--prometheus``) exports them; their panels are marked ``pending`` and
#: the live test proves them with the loop running (tests/e2e/test_observability.py).
CONTRACT_METRICS = frozenset({"ubiq_placement_weight", "ubiq_canary_weight", "ubiq_canary_step"})

_NAME = re.compile(r"(?<![\w\"])((?:envoy|ubiq|process)_\w+)\b(?!\s*(?:=|!=|=~|!~)\s*\")")
TARGET_LABELS = frozenset({"ubiq_cluster", "ubiq_region"})  # labels, not metrics


def metric_names(expr: str) -> set[str]:
    """Envoy, Ubiq and process metric families a query reads."""
    return {m for m in _NAME.findall(expr) if m not in TARGET_LABELS}


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False  # tables: the current value only


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | table | state-timeline
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None

    @property
    def pending(self) -> bool:
        return any(metric_names(q.expr) & CONTRACT_METRICS for q in self.queries)


@dataclass(frozen=True, slots=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    label: str
    metric: str  # label_values(metric, label)
    label_name: str
    multi: bool = False
    regex: str = ""  # Grafana's capture-group regex over the values

    @property
    def query(self) -> str:
        return f"label_values({self.metric}, {self.label_name})"


@dataclass(frozen=True, slots=True)
class Annotation:
    name: str
    expr: str
    title: str
    color: str = "blue"

    @property
    def pending(self) -> bool:
        return bool(metric_names(self.expr) & CONTRACT_METRICS)


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    tags: tuple[str, ...] = field(default=("ubiq",))

    def panels(self) -> tuple[Panel, ...]:
        return tuple(p for row in self.rows for p in row.panels)


def graph(
    title: str,
    description: str,
    *queries: Query,
    unit: str = "short",
    kind: str = "timeseries",
    width: int = 12,
    min: float | None = None,
    max: float | None = None,
) -> Panel:
    """A panel of series over time (or a table / state timeline with ``kind``)."""
    return Panel(title, description, queries, unit, kind, width, min=min, max=max)


def stat(title: str, description: str, expr: str) -> Panel:
    """A single number, a quarter of the width."""
    return Panel(title, description, (Query(expr),), kind="stat", width=6, height=4)
