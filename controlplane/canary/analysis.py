"""One analysis of a canary subset against its thresholds: pass, fail, or inconclusive.

The canary's signals are summed over every region that served it: requests add up, the success
rate is weighted by requests, and p99 is the worst region's (a regression anywhere is one).
Too few requests is **inconclusive**, never a failure: a canary nobody called has not failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from controlplane.feedback.signals import Signals
from controlplane.policy.canary import CanarySpec

Outcome = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True, slots=True)
class Aggregate:
    requests: float
    success_rate: float | None
    latency_p99_ms: float | None
    regions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Check:
    """One metric against one threshold."""

    metric: str  # successRate, latencyP99, requests, successRateDrop, latencyIncreasePercent
    value: float | None
    threshold: float
    ok: bool | None  # None: could not be evaluated
    comparison: Literal[">=", "<="]

    def describe(self) -> str:
        shown = "no data" if self.value is None else f"{self.value:.4g}"
        verdict = {True: "ok", False: "FAIL", None: "n/a"}[self.ok]
        return f"{self.metric} {shown} (want {self.comparison} {self.threshold:g}): {verdict}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "ok": self.ok,
        }


@dataclass(frozen=True, slots=True)
class Analysis:
    outcome: Outcome
    checks: tuple[Check, ...]
    why: str


def aggregate(signals: Signals, service: str, subset: str) -> Aggregate:
    requests = 0.0
    good = 0.0
    judged = 0.0
    p99: float | None = None
    regions = []
    for key, value in sorted(signals.values.items()):
        if key.service != service or key.subset != subset or not value.requests:
            continue
        regions.append(key.region)
        requests += value.requests
        if value.success_rate is not None:
            good += value.success_rate * value.requests
            judged += value.requests
        if value.latency_p99_ms is not None:
            p99 = value.latency_p99_ms if p99 is None else max(p99, value.latency_p99_ms)
    return Aggregate(requests, good / judged if judged else None, p99, tuple(regions))


def analyse(spec: CanarySpec, signals: Signals) -> Analysis:
    a = spec.analysis
    canary = aggregate(signals, spec.service, spec.canary_subset)
    if canary.requests < a.min_requests or canary.requests <= 0:
        volume = Check("requests", canary.requests, float(a.min_requests), False, ">=")
        why = f"{canary.requests:.0f} canary requests, fewer than minRequests {a.min_requests}"
        return Analysis("inconclusive", (volume,), why)
    checks = [Check("requests", canary.requests, float(a.min_requests), True, ">=")]
    checks.append(_at_least("successRate", canary.success_rate, a.min_success_rate))
    if a.max_latency_p99 is not None:
        checks.append(_at_most("latencyP99", canary.latency_p99_ms, float(a.max_latency_p99)))
    rel = a.relative
    if rel.max_success_rate_drop is not None or rel.max_latency_increase_percent is not None:
        stable = aggregate(signals, spec.service, spec.stable_subset)
        if rel.max_success_rate_drop is not None:
            drop = (
                stable.success_rate - canary.success_rate
                if stable.success_rate is not None and canary.success_rate is not None
                else None
            )
            checks.append(_at_most("successRateDrop", drop, rel.max_success_rate_drop))
        if rel.max_latency_increase_percent is not None:
            rise = (
                (canary.latency_p99_ms / stable.latency_p99_ms - 1.0) * 100.0
                if stable.latency_p99_ms and canary.latency_p99_ms is not None
                else None
            )
            checks.append(
                _at_most("latencyIncreasePercent", rise, rel.max_latency_increase_percent)
            )
    failed = [c for c in checks if c.ok is False]
    if failed:
        return Analysis("fail", tuple(checks), "; ".join(c.describe() for c in failed))
    unknown = [c for c in checks if c.ok is None]
    if unknown:
        why = "; ".join(c.describe() for c in unknown)
        return Analysis("inconclusive", tuple(checks), f"cannot evaluate: {why}")
    return Analysis("pass", tuple(checks), "every check passed")


def _at_least(metric: str, value: float | None, threshold: float) -> Check:
    return Check(metric, value, threshold, None if value is None else value >= threshold, ">=")


def _at_most(metric: str, value: float | None, threshold: float) -> Check:
    return Check(metric, value, threshold, None if value is None else value <= threshold, "<=")
