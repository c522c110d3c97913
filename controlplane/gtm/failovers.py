"""Failovers, for metrics: a name's answers leaving a region because it has no healthy target
there (pure). A region left for any other reason -- rotation, lower latency, a policy edit -- is
no failover."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from controlplane.gtm.types import Decision, HealthView, SteeringPolicy


class Decided(Protocol):
    """What a failover count reads of a decided plan (``plan.DecidedPlan`` is one)."""

    @property
    def policies(self) -> Mapping[str, SteeringPolicy]: ...

    @property
    def decisions(self) -> Mapping[tuple[str, str], Decision]: ...

    @property
    def health(self) -> HealthView: ...


def failover_keys(plan: Decided) -> set[tuple[str, str]]:
    """Every (name, region) a failover can be counted for: exported at 0 before the first."""
    return {(p.name, t.region) for p in plan.policies.values() for t in p.targets}


def regions_by_address(policies: Mapping[str, SteeringPolicy]) -> dict[str, str]:
    """Target address -> its region (the first target's, if several regions share one)."""
    out: dict[str, str] = {}
    for policy in policies.values():
        for target in policy.targets:
            out.setdefault(target.address, target.region)
    return out


def failed_over(
    previous: Mapping[tuple[str, str], Decision], plan: Decided
) -> set[tuple[str, str]]:
    """(name, region) pairs some client group's answers left because no target of the name in
    that region is healthy in ``plan.health``."""
    out: set[tuple[str, str]] = set()
    for key, decision in plan.decisions.items():
        before = previous.get(key)
        if before is None or before.regions == decision.regions:  # the common case: cheap
            continue
        policy = plan.policies.get(decision.name)
        if policy is None:
            continue
        for region in set(before.regions) - set(decision.regions):
            targets = [t for t in policy.targets if t.region == region]
            if targets and not any(plan.health.is_healthy(t) for t in targets):
                out.add((decision.name, region))
    return out
