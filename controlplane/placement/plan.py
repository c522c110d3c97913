"""What the model alone says about a service's placement, computed once per model.

``plan_for(model, service)`` runs the constraint step (``static.place``: selectors,
taints/tolerations, residency, failover order), groups the candidates by region and resolves
every parameter default, so a tick only does the work that depends on signals and health. Plans
are memoised per Model object (models are immutable), keeping the last few models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.placement.static import PlacedCluster, place
from controlplane.policy.model import Model
from controlplane.policy.placement import Spread, Strategy

__all__ = ["FORGET_AFTER_MIN_S", "RegionPlan", "ServicePlan", "plan_for", "plans_of"]

FORGET_AFTER_MIN_S = 10.0  # a smoothed value older than max(2 x minDwell, this) restarts
_DEFAULT_STRATEGY = Strategy()
_DEFAULT_SPREAD = Spread()
_KEEP_MODELS = 3


@dataclass(frozen=True, slots=True)
class RegionPlan:
    name: str
    order: int  # candidate order: failover order first, then name
    clusters: tuple[PlacedCluster, ...]
    costs: tuple[float, ...]  # per cluster, costWeight
    capacities: tuple[int | None, ...]  # per cluster, capacity.requestsPerSecond
    cost: float  # every cluster up: the cheapest
    capacity: float | None  # every cluster up: the sum of the declared capacities


@dataclass(frozen=True, slots=True)
class ServicePlan:
    service: str
    strategy: Strategy
    spread: Spread
    regions: tuple[RegionPlan, ...]
    region_names: tuple[str, ...]
    cluster_names: frozenset[str]
    dwell: float  # seconds
    step_interval: float
    forget_after: float
    thresholds: Mapping[str, float | str | None]
    region_index: Mapping[str, int]  # region -> its position in ``regions``
    region_set: frozenset[str]
    all_eligible: Mapping[
        str, str
    ]  # the verdicts when every region is eligible (shared, read-only)
    # per-plan results the batch tick computes once (a signal-free choice, an empty block)
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


_CACHE: dict[int, tuple[Model, dict[str, ServicePlan]]] = {}


def plans_of(model: Model) -> dict[str, ServicePlan]:
    """The model's memo of plans (a new one when the model was evicted: its plans are rebuilt)."""
    entry = _CACHE.get(id(model))
    if entry is None or entry[0] is not model:
        if len(_CACHE) >= _KEEP_MODELS:
            _CACHE.pop(next(iter(_CACHE)))
        entry = (model, {})
        _CACHE[id(model)] = entry
    return entry[1]


def plan_for(model: Model, service: str) -> ServicePlan:
    plans = plans_of(model)
    found = plans.get(service)
    if found is None:
        found = plans[service] = _build(model, service)
    return found


def _build(model: Model, service: str) -> ServicePlan:
    placement = model.placement_for(service)
    spec = placement.spec if placement is not None else None
    strategy = spec.strategy if spec is not None else _DEFAULT_STRATEGY
    spread = spec.spread if spec is not None and spec.spread is not None else _DEFAULT_SPREAD
    grouped: dict[str, list[PlacedCluster]] = {}
    for p in place(model, service):
        grouped.setdefault(p.region, []).append(p)
    regions = []
    for order, (name, placed) in enumerate(grouped.items()):
        specs = [model.clusters[p.name].spec for p in placed]
        caps = [c for s in specs if (c := s.capacity.requests_per_second)]
        regions.append(
            RegionPlan(
                name,
                order,
                tuple(placed),
                tuple(s.cost_weight for s in specs),
                tuple(s.capacity.requests_per_second for s in specs),
                min(s.cost_weight for s in specs),
                float(sum(caps)) if caps else None,
            )
        )
    d, h, slo = strategy.damping, strategy.hysteresis, strategy.slo
    names = tuple(r.name for r in regions)
    dwell = h.min_dwell / 1000.0
    return ServicePlan(
        service=service,
        strategy=strategy,
        spread=spread,
        regions=tuple(regions),
        region_names=names,
        cluster_names=frozenset(p.name for r in regions for p in r.clusters),
        dwell=dwell,
        step_interval=d.step_interval / 1000.0,
        forget_after=max(2.0 * dwell, FORGET_AFTER_MIN_S),
        thresholds={
            "strategy": strategy.type,
            "latencyPercentile": strategy.latency_percentile,
            "sloSuccessRate": slo.success_rate if slo else None,
            "sloLatencyP99Ms": (
                float(slo.latency_p99) if slo and slo.latency_p99 is not None else None
            ),
            "minDwellS": dwell,
            "thresholdPercent": h.threshold_percent,
            "ewmaAlpha": d.ewma_alpha,
            "minRequests": float(d.min_requests),
            "maxWeightChangePercent": d.max_weight_change_percent,
            "stepIntervalS": d.step_interval / 1000.0,
            "stickinessBonusPercent": d.stickiness_bonus_percent,
            "minRegions": float(spread.min_regions),
            "maxSharePercent": spread.max_share_percent,
        },
        region_index={n: i for i, n in enumerate(names)},
        region_set=frozenset(names),
        all_eligible=dict.fromkeys(names, "eligible"),
    )
