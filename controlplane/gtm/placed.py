"""The GTM's side of "one decision, two consumers": placement Decisions -> regions per group.

Pure. For every GlobalService whose service has a Decision, ``place_groups`` asks
``placement.groups.decide_groups`` which regions each client group is answered with (damped
there, with the Placement's hysteresis and minimum dwell), and ``as_placed`` turns the choices
into the ``Placed`` values steering reads. The GTM itself damps nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.gtm.plan import GtmPlan
from controlplane.gtm.types import DEFAULT_GROUP, Placed
from controlplane.placement.decision import Decision
from controlplane.placement.groups import GroupChoice, client_latency, decide_groups
from controlplane.policy.model import Model

__all__ = ["Choices", "as_placed", "place_groups"]

Choices = Mapping[str, Mapping[str, GroupChoice]]  # GTM name -> group -> choice


def place_groups(
    plan: GtmPlan,
    model: Model,
    decisions: Mapping[str, Decision],
    *,
    now: float,
    measured: Mapping[tuple[str, str], float] | None = None,
    previous: Choices | None = None,
) -> dict[str, dict[str, GroupChoice]]:
    """name -> group -> GroupChoice for every name whose service has a Decision.

    ``measured``: client latency (group, region) -> ms (``Signals.client_latency_ms``), over
    each GlobalService's typed ``latency`` matrix. ``previous``: the last call's result."""
    groups = [g.name for g in plan.groups]
    if DEFAULT_GROUP not in groups:
        groups.append(DEFAULT_GROUP)
    prev = previous or {}
    out: dict[str, dict[str, GroupChoice]] = {}
    for name, policy in plan.policies.items():
        decision = decisions.get(policy.service)
        if decision is None:
            continue
        out[name] = decide_groups(
            model,
            decision,
            groups,
            client_latency(measured or {}, policy.latency),
            now=now,
            previous=prev.get(name),
            by_latency=policy.strategy == "lowestLatency",
        )
    return out


def as_placed(choices: Choices) -> dict[tuple[str, str], Placed]:
    """(name, group) -> Placed, what steering reads."""
    return {
        (name, group): Placed(
            regions=tuple(r for r, _ in c.regions),
            fallback=c.fallback,
            rule=c.reason.rule,
            reasons=c.reason.details,
            dwell_until=c.held_until,
            since=c.since,
        )
        for name, per_group in choices.items()
        for group, c in per_group.items()
    }
