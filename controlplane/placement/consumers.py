"""Which services get a placement Decision, and which consumer reads which.

One rule, used by ``ubiq serve`` (``controlplane.loop``), ``ubiq dns explain`` and the tests:

- *loop-driven* services (a Placement whose strategy needs measurements -- ``lowestLatency``,
  ``lowestCost``, ``capacity`` -- or that has an ``slo``): their Decisions set the EDS locality
  weights of every Envoy while a feedback source runs (``--prometheus``). Without one there is
  nothing measured to decide on, and the compiler's static locality rules (own region first,
  ``distribute``, failover) serve Envoy better than equal shares across regions would.
- *GTM-placed* services (a GlobalService names the service and the service has a Placement):
  the GTM answers each client group from their Decision (``placement.groups``), in both modes.
  A GlobalService whose service has no Placement steers on health alone: there is no placement
  to follow and no damping asked for.

Both sets are decided in one tick, by one engine, with one memory, so a service in both reaches
Envoy and DNS as the very same Decision object.
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.placement.decision import Decision
from controlplane.policy.model import Model

__all__ = [
    "METRIC_STRATEGIES",
    "decided_services",
    "gtm_placed",
    "loop_driven",
    "xds_decisions",
]

METRIC_STRATEGIES = frozenset({"lowestLatency", "lowestCost", "capacity"})


def loop_driven(model: Model) -> frozenset[str]:
    """Services whose Placement asks for measurements (see the module docstring)."""
    out = set()
    for placement in model.placements.values():
        strategy = placement.spec.strategy
        if strategy.type in METRIC_STRATEGIES or strategy.slo is not None:
            out.add(placement.spec.service)
    return frozenset(out)


def gtm_placed(model: Model) -> frozenset[str]:
    """Services a GlobalService steers to that have a Placement: the GTM follows their Decision."""
    return frozenset(
        gs.spec.service
        for gs in model.global_services.values()
        if model.placement_for(gs.spec.service) is not None
    )


def decided_services(model: Model) -> frozenset[str]:
    """Every service the placement step decides for, in both modes."""
    return loop_driven(model) | gtm_placed(model)


def xds_decisions(
    model: Model, decisions: Mapping[str, Decision], *, measured: bool
) -> dict[str, Decision]:
    """The Decisions the xDS compiler applies: the loop-driven ones, when a feedback source runs."""
    if not measured:
        return {}
    driven = loop_driven(model)
    return {name: d for name, d in decisions.items() if name in driven}
