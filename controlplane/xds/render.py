"""What a node would receive, as JSON (for ``ubiq render``): the compiler's output, unchanged,
and the order in which each RoutePolicy's routes are tried."""

from __future__ import annotations

import json

from google.protobuf import json_format

from controlplane.policy.model import Model
from controlplane.policy.route_order import effective_order, written_order
from controlplane.xds.compiler import CompileOptions, NodeIdentity, compile_node_resources
from controlplane.xds.compiler.effective import Decisions
from controlplane.xds.resources import ORDER, short_name


def render_node_json(
    model: Model,
    node: NodeIdentity,
    options: CompileOptions | None = None,
    *,
    decisions: Decisions | None = None,
) -> str:
    """``{"CDS": [...], "EDS": [...], "LDS": [...], "RDS": [...], "routeOrder": {...}}``, each
    resource with ``@type``; ``routeOrder`` maps each RoutePolicy to its ``ruleOrder`` and its
    routes in the order Envoy tries them (``effective``) and as written (``written``)."""
    resources = compile_node_resources(model, node, options, decisions=decisions)
    out: dict[str, list[object]] = {}
    for type_url in ORDER:
        items: list[object] = []
        for message in resources.get(type_url, {}).values():
            data = json_format.MessageToDict(message, preserving_proto_field_name=True)
            items.append({"@type": type_url, **data})
        out[short_name(type_url)] = items
    out["routeOrder"] = route_order(model)  # type: ignore[assignment]
    return json.dumps(out, indent=2, sort_keys=False) + "\n"


def route_order(model: Model) -> dict[str, dict[str, object]]:
    return {
        name: {
            "ruleOrder": policy.spec.rule_order,
            "effective": [e.name for e in effective_order(policy)],
            "written": [e.name for e in written_order(policy)],
        }
        for name, policy in model.route_policies.items()
    }
