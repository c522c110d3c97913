"""Canary weights into the model: rewrite the RoutePolicy rules that split stable/canary traffic.

A rule is rewritten when its destinations are exactly the service's stable and canary subsets;
rules that route to one subset only (e.g. by header) are left alone. The result is an ordinary
Model, so the xDS compiler needs nothing new, and the incremental compiler sees exactly one
changed RoutePolicy per moved canary.
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.canary.controller import CanaryStatus
from controlplane.policy.documents import AnyDocument, RoutePolicy
from controlplane.policy.model import Model
from controlplane.policy.route import Destination, HttpRule


def _rewrite(rule: HttpRule, status: CanaryStatus) -> HttpRule:
    subsets = {d.subset for d in rule.route if d.service == status.service}
    own = all(d.service == status.service for d in rule.route)
    if not own or len(rule.route) != 2 or subsets != {status.stable_subset, status.canary_subset}:
        return rule

    def weigh(d: Destination) -> Destination:
        weight = status.weight if d.subset == status.canary_subset else status.stable_weight
        return d.model_copy(update={"weight": weight})

    return rule.model_copy(update={"route": tuple(weigh(d) for d in rule.route)})


def rule_weights(route: RoutePolicy, status: CanaryStatus) -> RoutePolicy:
    http = tuple(_rewrite(rule, status) for rule in route.spec.http)
    if http == route.spec.http:
        return route
    return route.model_copy(update={"spec": route.spec.model_copy(update={"http": http})})


def apply_canaries(model: Model, statuses: Mapping[str, CanaryStatus]) -> Model:
    """``model`` with every canary's weight written into its RoutePolicy (same model if none moved)."""
    changed: dict[str, RoutePolicy] = {}
    for name, status in sorted(statuses.items()):
        canary = model.canaries.get(name)
        if canary is None:
            continue
        route_name = canary.spec.route_policy
        route = changed.get(route_name) or model.route_policies.get(route_name)
        if route is None:
            continue
        new = rule_weights(route, status)
        if new is not route:
            changed[route_name] = new
    if not changed:
        return model
    docs: list[AnyDocument] = [
        changed.get(d.name, d) if isinstance(d, RoutePolicy) else d for d in model.documents()
    ]
    return Model.build(docs, model.sources)
