"""``Placement``: which clusters serve a service and how traffic is spread among them."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from controlplane.policy.common import (
    Label,
    LabelKey,
    LabelSelector,
    Millis,
    Name,
    PositiveMillis,
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
    """How many regions must carry traffic, and how much of it one region may take."""

    min_regions: int = Field(default=1, ge=1)
    max_share_percent: float = Field(default=100.0, gt=0, le=100)

    @model_validator(mode="after")
    def _share_fits_regions(self) -> Spread:
        needed = math.ceil(100.0 / self.max_share_percent - 1e-9)
        if needed > self.min_regions:
            raise ValueError(
                f"maxSharePercent {self.max_share_percent:g} needs traffic in at least {needed}"
                f" regions; set minRegions to {needed} or more (it is {self.min_regions})"
            )
        return self


class Residency(Spec):
    """A data-residency boundary: endpoints outside these regions are never used."""

    regions: tuple[Label, ...] = Field(min_length=1)


class Slo(Spec):
    latency_p99: Millis | None = None
    success_rate: float | None = Field(default=None, ge=0, le=1)


class Hysteresis(Spec):
    min_dwell: Millis = 30_000
    threshold_percent: float = Field(default=10.0, ge=0, le=100)


class Damping(Spec):
    """How the placement engine smooths signals and paces its own changes (see docs/placement.md)."""

    ewma_alpha: float = Field(default=0.5, gt=0, le=1)  # weight of the newest poll
    min_requests: int = Field(default=20, ge=0)  # per poll window, before a region is judged
    max_weight_change_percent: float = Field(default=25.0, ge=1, le=100)  # per step
    step_interval: PositiveMillis = 5_000
    stickiness_bonus_percent: float = Field(default=5.0, ge=0, lt=100)


StrategyType = Literal["static", "lowestLatency", "lowestCost", "failover", "capacity"]
LatencyPercentile = Literal["p50", "p90", "p99"]


class Strategy(Spec):
    type: StrategyType = "static"
    weights: dict[Name, Weight] = Field(default_factory=dict)
    order: tuple[Name, ...] = ()
    slo: Slo | None = None
    latency_percentile: LatencyPercentile = "p99"
    hysteresis: Hysteresis = Field(default_factory=Hysteresis)
    damping: Damping = Field(default_factory=Damping)

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
