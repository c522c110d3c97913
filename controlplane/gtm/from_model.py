"""Policy model -> GTM inputs: one SteeringPolicy per GlobalService, and the client groups.

Pure. Targets are the GlobalService's explicit ``targets`` or, by default, every cluster the
service is placed in (static placement), answered at the cluster's gateway address.
"""

from __future__ import annotations

import ipaddress

from controlplane.gtm.types import ClientGroup, SteeringPolicy, Target
from controlplane.placement.static import place
from controlplane.policy.globalservice import GlobalServiceSpec
from controlplane.policy.model import Model


def _targets(model: Model, spec: GlobalServiceSpec) -> tuple[Target, ...]:
    out: list[Target] = []
    if spec.targets:
        for t in spec.targets:
            cluster = model.clusters[t.cluster].spec
            gateway = cluster.gateway
            address = t.address or (gateway.address if gateway else None)
            if address is None:
                continue  # cross-checks already refuse this
            port = t.port or spec.port or (gateway.port if gateway else 443)
            out.append(Target(t.cluster, cluster.region, address, port, t.weight, t.tier))
        return tuple(out)
    for placed in place(model, spec.service):
        cluster = model.clusters[placed.name].spec
        if cluster.gateway is None:
            continue
        port = spec.port or cluster.gateway.port
        out.append(
            Target(
                placed.name,
                cluster.region,
                cluster.gateway.address,
                port,
                max(placed.weight, 0),
                placed.priority,
            )
        )
    return tuple(out)


def steering_policy(model: Model, name: str) -> SteeringPolicy:
    spec = model.global_services[name].spec
    hysteresis = None
    placement = model.placement_for(spec.service)
    if placement is not None:
        hysteresis = placement.spec.strategy.hysteresis
    return SteeringPolicy(
        name=spec.name.rstrip(".").lower(),
        zone=spec.zone.rstrip(".").lower(),
        strategy=spec.strategy,
        targets=_targets(model, spec),
        ttl=spec.ttl // 1000,
        max_answers=spec.max_answers,
        all_down=spec.all_down,
        fallback=spec.fallback,
        latency={g: {r: float(ms) for r, ms in row.items()} for g, row in spec.latency.items()},
        geo=dict(spec.geo),
        sticky=spec.sticky,
        latency_switch_pct=hysteresis.threshold_percent if hysteresis else 10.0,
    )


def steering_policies(model: Model) -> tuple[SteeringPolicy, ...]:
    return tuple(steering_policy(model, name) for name in model.global_services)


def client_groups(model: Model) -> tuple[ClientGroup, ...]:
    """Every client group named by any GlobalService; one name, one definition (merged CIDRs)."""
    merged: dict[str, tuple[list[str], str | None]] = {}
    for gs in model.global_services.values():
        for group in gs.spec.client_groups:
            cidrs, region = merged.setdefault(group.name, ([], group.region))
            cidrs.extend(c for c in group.cidrs if c not in cidrs)
            if region is None and group.region is not None:
                merged[group.name] = (cidrs, group.region)
    return tuple(
        ClientGroup(
            name,
            tuple(ipaddress.ip_network(c, strict=False) for c in cidrs),
            region,
        )
        for name, (cidrs, region) in sorted(merged.items())
    )
