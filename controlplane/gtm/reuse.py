"""Which names a new decision may take from the plan being served, unchanged (pure).

A health change touches the names whose targets it concerns; every other name's decisions
would come out of steering the same. ``reusable`` finds those names, so ``plan.decide`` steers
only the rest and the answer table rebuilds only the names whose decisions changed.

A name's decisions are reused when, against the served plan: the client groups are the same, its
policy is equal, each of its targets has the same health (and, when down, the same detail: it
is in the reasons), the placement gives each of its groups the same ``Placed``, its policy does
not rotate (roundRobin, non-sticky weighted: the slot moves with the clock), and no decision of
it is held by a minimum dwell (that ends with the clock). Steering is a function of exactly
these (``steering``'s invariants; ``previous`` only carries ``since``), so a reused decision is
what steering would decide; it keeps its ``epoch`` and ``since``.
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.gtm.steering import rotates
from controlplane.gtm.types import (
    DEFAULT_GROUP,
    Decision,
    HealthView,
    Placed,
    SteeringPolicy,
    Target,
)


def reusable(
    policies: Mapping[str, SteeringPolicy],
    groups: tuple[str, ...],
    health: HealthView,
    placed: Mapping[tuple[str, str], Placed],
    served_policies: Mapping[str, SteeringPolicy],
    served_groups: tuple[str, ...],
    served_health: HealthView,
    served_placed: Mapping[tuple[str, str], Placed],
    served: Mapping[tuple[str, str], Decision],
) -> set[str]:
    """The names whose ``served`` decisions stand for the new inputs."""
    if groups != served_groups:
        return set()
    every = groups if DEFAULT_GROUP in groups else (*groups, DEFAULT_GROUP)
    out: set[str] = set()
    for name, policy in policies.items():
        old = served_policies.get(name)
        if old is None or (old is not policy and old != policy) or rotates(policy):
            continue
        if any(_state(t, health) != _state(t, served_health) for t in policy.targets):
            continue
        if any(placed.get((name, g)) != served_placed.get((name, g)) for g in every):
            continue
        decisions = [served.get((name, g)) for g in every]
        if any(d is None or d.dwell_until is not None for d in decisions):
            continue
        out.add(name)
    return out


def _state(target: Target, health: HealthView) -> tuple[bool, str | None]:
    if health.is_healthy(target):
        return True, None
    return False, health.detail.get((target.cluster, target.address, target.port))
