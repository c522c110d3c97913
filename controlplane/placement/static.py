"""Which clusters serve a service, from the Placement document alone (no metrics yet).

Pure functions of the model. The metric-driven strategies (lowestLatency, lowestCost) start from
this candidate set and re-weight it; until their signals exist, every candidate gets its static
weight (or an equal share).
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.policy.cluster import Taint
from controlplane.policy.model import Model
from controlplane.policy.placement import PlacementSpec, Toleration


@dataclass(frozen=True, slots=True)
class PlacedCluster:
    name: str
    region: str
    weight: int  # relative; 0 means "placed but no traffic"
    priority: int  # 0 first; failover strategies give later clusters higher numbers
    preferred: bool = True  # False when only a PreferNoSchedule taint was tolerated implicitly


def tolerates(tolerations: tuple[Toleration, ...], taint: Taint) -> bool:
    for t in tolerations:
        if t.key != taint.key or (t.effect is not None and t.effect != taint.effect):
            continue
        if t.operator == "Exists" or t.value == taint.value:
            return True
    return False


def _candidates(model: Model, spec: PlacementSpec) -> list[str]:
    names: set[str] = set(spec.clusters)
    if spec.cluster_selector is not None:
        names |= {
            n for n, c in model.clusters.items() if spec.cluster_selector.matches(c.spec.labels)
        }
    if not spec.clusters and spec.cluster_selector is None:
        names = set(model.clusters)
    return sorted(names)


def place(model: Model, service: str) -> tuple[PlacedCluster, ...]:
    """The clusters that serve ``service``, in priority order, each with a relative weight."""
    placement = model.placement_for(service)
    if placement is None:
        svc = model.services.get(service)
        names = sorted({ep.cluster for ep in svc.spec.endpoints}) if svc else []
        return tuple(
            PlacedCluster(n, model.clusters[n].spec.region, 1, 0)
            for n in names
            if n in model.clusters
        )
    spec = placement.spec
    allowed_regions = set(spec.residency.regions) if spec.residency else None
    placed: list[PlacedCluster] = []
    for name in _candidates(model, spec):
        cluster = model.clusters[name].spec
        if allowed_regions is not None and cluster.region not in allowed_regions:
            continue
        blocking = [
            t
            for t in cluster.taints
            if t.effect == "NoSchedule" and not tolerates(spec.tolerations, t)
        ]
        if blocking:
            continue
        preferred = all(
            tolerates(spec.tolerations, t) for t in cluster.taints if t.effect == "PreferNoSchedule"
        )
        weight = spec.strategy.weights.get(name, 0 if spec.strategy.weights else 1)
        priority = (
            spec.strategy.order.index(name)
            if name in spec.strategy.order
            else len(spec.strategy.order)
            if spec.strategy.type == "failover"
            else 0
        )
        placed.append(PlacedCluster(name, cluster.region, weight, priority, preferred))
    placed.sort(key=lambda p: (p.priority, not p.preferred, p.name))
    return tuple(placed)


def residency_regions(model: Model, service: str) -> frozenset[str] | None:
    """The regions a service's traffic must stay in, or None when it has no boundary."""
    placement = model.placement_for(service)
    if placement is None or placement.spec.residency is None:
        return None
    return frozenset(placement.spec.residency.regions)
