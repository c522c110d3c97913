"""``Placement``: which clusters serve a service and how traffic is spread among them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from controlplane.policy.common import (
    Label,
    LabelKey,
    LabelSelector,
    Millis,
    Name,
    Spec,
    Weight,
    several_problems,
)


class Toleration(Spec):
    key: LabelKey
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule"] | None = None


class Spread(Spec):
    min_regions: int = Field(ge=1)


class Residency(Spec):
    """A data-residency boundary: endpoints outside these regions are never used."""

    regions: tuple[Label, ...] = Field(min_length=1)


class Slo(Spec):
    latency_p99: Millis | None = None
    success_rate: float | None = Field(default=None, ge=0, le=1)


class Hysteresis(Spec):
    min_dwell: Millis = 30_000
    threshold_percent: float = Field(default=10.0, ge=0, le=100)


StrategyType = Literal["static", "lowestLatency", "lowestCost", "failover"]


class Strategy(Spec):
    type: StrategyType = "static"
    weights: dict[Name, Weight] = Field(default_factory=dict)
    order: tuple[Name, ...] = ()
    slo: Slo | None = None
    hysteresis: Hysteresis = Field(default_factory=Hysteresis)

    @model_validator(mode="after")
    def _fields_fit_type(self) -> Strategy:
        """Every mismatch, each at its own field (not only the first)."""
        found: list[tuple[tuple[str, ...], str]] = []
        if self.weights and self.type != "static":
            found.append((("weights",), f"weights apply to strategy static, not {self.type}"))
        if self.type == "failover" and not self.order:
            found.append((("type",), "strategy failover needs order"))
        if self.order and self.type != "failover":
            found.append((("order",), f"order applies to strategy failover, not {self.type}"))
        if self.type == "lowestCost" and self.slo is None:
            found.append((("type",), "strategy lowestCost needs slo"))
        if found:
            raise several_problems(found)
        return self


class PlacementSpec(Spec):
    service: Name
    clusters: tuple[Name, ...] = ()
    cluster_selector: LabelSelector | None = None
    tolerations: tuple[Toleration, ...] = ()
    spread: Spread | None = None
    residency: Residency | None = None
    strategy: Strategy = Field(default_factory=Strategy)
