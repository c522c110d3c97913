"""What the placement engine decides for one service, with everything needed to explain it.

A ``Decision`` is both the output of a tick and the memory the next tick starts from (smoothed
signals, when regions were left, since when the current choice holds). ``placed`` has the shape
the xDS compiler already reads (``controlplane.xds.compiler.effective.Decisions``);
``active_regions`` is what the GTM answers with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from controlplane.feedback.signals import RegionSignal
from controlplane.placement.plan import ServicePlan
from controlplane.placement.smoothing import Smoothed
from controlplane.placement.static import PlacedCluster
from controlplane.placement.strategies import RegionFacts

Verdict = Literal[
    "serving",  # has weight now
    "eligible",  # may serve, the strategy did not pick it (or it is waiting for failback)
    "unhealthy",  # every placed cluster in the region is down: left at once
    "sloBreach",  # success rate under the SLO: left at once, back after the dwell
    "overLatencySlo",  # p99 over the SLO: not picked (lowestCost), left through normal damping
    "probation",  # left for a breach, no data since, the dwell has passed: may serve again
]

Rule = Literal[
    "static",
    "failover",
    "lowestLatency",
    "lowestCost",
    "capacity",
    "leave",  # a serving region went unhealthy or broke the SLO: its weight went to 0 now
    "step",  # moving toward the target, at most maxWeightChangePercent per stepInterval
    "hold.dwell",  # a better target exists; waiting for the minimum dwell to pass
    "hold.hysteresis",  # a better region exists but not better by thresholdPercent
    "hold.stale",  # signals could not be read: the previous weights stay
    "hold.noData",  # too few requests to judge: the previous choice stays
    "allExcluded",  # no region qualifies: every healthy one (or every one) serves
    "noCandidates",  # no cluster can serve the service
]


@dataclass(frozen=True, slots=True)
class RegionInput:
    """One region as the engine saw it: the measured inputs and the verdict against thresholds."""

    region: str
    clusters: tuple[str, ...]
    healthy: bool
    verdict: Verdict
    weight: int  # percent of the service's traffic now
    target: int  # percent the engine is moving toward
    judged: bool  # enough requests this poll to judge the region
    requests: float | None = None  # last judged poll's volume
    success_rate: float | None = None  # smoothed
    latency_ms: float | None = None  # smoothed, at the strategy's percentile
    cost: float = 1.0
    capacity: float | None = None
    note: str = ""  # e.g. "success 0.700 < slo 0.990"

    def as_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "clusters": list(self.clusters),
            "healthy": self.healthy,
            "verdict": self.verdict,
            "weight": self.weight,
            "target": self.target,
            "judged": self.judged,
            "requests": self.requests,
            "successRate": self.success_rate,
            "latencyMs": self.latency_ms,
            "cost": self.cost,
            "capacity": self.capacity,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Reason:
    rule: Rule
    summary: str
    details: tuple[str, ...] = ()
    thresholds: Mapping[str, float | str | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "summary": self.summary,
            "details": list(self.details),
            "thresholds": dict(self.thresholds),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    service: str
    strategy: str
    placed: tuple[PlacedCluster, ...]  # what the xDS compiler reads
    weights: Mapping[str, int]  # region -> percent now (positive entries only; sum 100)
    target: Mapping[str, int]  # region -> percent being moved toward
    reason: Reason
    made_at: float  # seconds, from the injected clock
    since: float  # the current target has held since
    changed_at: float  # the weights last changed
    dwell_until: float  # before this a non-forced change of target is held
    next_decision_at: (
        float | None
    )  # re-decide then even without new inputs (dwell, step, probation)
    stale: bool = False
    signals_at: float | None = None
    breached: Mapping[str, float] = field(default_factory=dict)  # region -> when it broke the SLO
    verdicts: Mapping[str, str] = field(default_factory=dict)  # region -> Verdict, candidate order
    latency_percentile: str = "p99"
    # the engine's memory and change detection; not part of what was decided
    facts: Sequence[RegionFacts] = field(default=(), compare=False, repr=False)
    smoothed: Mapping[str, Smoothed] = field(default_factory=dict, compare=False, repr=False)
    plan: ServicePlan | None = field(default=None, compare=False, repr=False)
    down: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    seen: Sequence[RegionSignal | None] = field(default=(), compare=False, repr=False)

    @property
    def regions(self) -> tuple[RegionInput, ...]:
        """Every candidate region with its inputs and verdict (built on demand, for "why")."""
        return tuple(self._input(f) for f in self.facts)

    def _input(self, f: RegionFacts) -> RegionInput:
        sm = f.smoothed
        weight = self.weights.get(f.name, 0)
        verdict = self.verdicts.get(f.name, f.verdict)
        if verdict == "eligible" and weight > 0:
            verdict = "serving"
        return RegionInput(
            region=f.name,
            clusters=tuple(p.name for p in f.clusters),
            healthy=bool(f.healthy),
            verdict=verdict,  # type: ignore[arg-type]
            weight=weight,
            target=self.target.get(f.name, 0),
            judged=f.judged,
            requests=sm.requests if sm else None,
            success_rate=sm.success_rate if sm else None,
            latency_ms=sm.latency(self.latency_percentile) if sm else None,
            cost=f.cost,
            capacity=f.capacity,
            note=f.note,
        )

    def judged(self, region: str) -> bool:
        return any(f.judged for f in self.facts if f.name == region)

    @property
    def active_regions(self) -> tuple[tuple[str, int], ...]:
        """(region, percent) with traffic, heaviest first: what DNS answers with."""
        return tuple(sorted(self.weights.items(), key=lambda kv: (-kv[1], kv[0])))

    def region(self, name: str) -> RegionInput | None:
        return next((self._input(f) for f in self.facts if f.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        """The decision as JSON-able data, for the API and ``ubiq placement why``."""
        return {
            "service": self.service,
            "strategy": self.strategy,
            "weights": dict(self.weights),
            "target": dict(self.target),
            "reason": self.reason.as_dict(),
            "regions": [r.as_dict() for r in self.regions],
            "placed": [
                {"cluster": p.name, "region": p.region, "weight": p.weight, "priority": p.priority}
                for p in self.placed
            ],
            "madeAt": self.made_at,
            "since": self.since,
            "changedAt": self.changed_at,
            "dwellUntil": self.dwell_until,
            "nextDecisionAt": self.next_decision_at,
            "stale": self.stale,
            "signalsAt": self.signals_at,
            "breached": dict(self.breached),
        }


def compiler_decisions(decisions: Mapping[str, Decision]) -> dict[str, tuple[PlacedCluster, ...]]:
    """The mapping ``controlplane.xds.compiler`` takes as ``decisions``."""
    return {name: d.placed for name, d in decisions.items()}


def explain(decision: Decision) -> str:
    """A few lines a person reads: the rule, the summary, then one line per region."""
    lines = [f"{decision.service}: {decision.reason.rule}: {decision.reason.summary}"]
    lines += [f"  {d}" for d in decision.reason.details]
    for r in decision.regions:
        measured = []
        if r.success_rate is not None:
            measured.append(f"success {r.success_rate:.3f}")
        if r.latency_ms is not None:
            measured.append(f"latency {r.latency_ms:.1f}ms")
        if r.requests is not None:
            measured.append(f"{r.requests:.0f} req")
        data = ", ".join(measured) if measured else "no data"
        note = f"; {r.note}" if r.note else ""
        lines.append(f"  {r.region}: {r.verdict}, weight {r.weight} -> {r.target} ({data}{note})")
    return "\n".join(lines)
