"""``Canary``: a stepwise shift from a stable subset to a canary subset, gated by analysis."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from controlplane.policy.common import Label, Millis, Name, Spec, Weight


class RelativeToStable(Spec):
    """Thresholds against the stable subset measured over the same window (off when unset)."""

    max_success_rate_drop: float | None = Field(default=None, ge=0, le=1)
    max_latency_increase_percent: float | None = Field(default=None, ge=0)


class Analysis(Spec):
    min_success_rate: float = Field(default=0.99, ge=0, le=1)
    max_latency_p99: Millis | None = None
    min_requests: int = Field(default=100, ge=0)
    failure_limit: int = Field(default=1, ge=1)
    relative: RelativeToStable = Field(default_factory=RelativeToStable)


class CanarySpec(Spec):
    service: Name
    route_policy: Name
    stable_subset: Label
    canary_subset: Label
    steps: tuple[Weight, ...] = Field(default=(10, 25, 50, 100), min_length=1)
    interval: Millis = 60_000
    analysis: Analysis = Field(default_factory=Analysis)
    on_failure: Literal["rollback", "pause"] = "rollback"

    @model_validator(mode="after")
    def _steps_increase(self) -> CanarySpec:
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError(f"steps must increase, got {list(self.steps)}")
        if self.stable_subset == self.canary_subset:
            raise ValueError("stableSubset and canarySubset must differ")
        return self
