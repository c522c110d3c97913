"""What a node would receive, as JSON (for ``ubiq render``): the compiler's output, unchanged."""

from __future__ import annotations

import json

from google.protobuf import json_format

from controlplane.policy.model import Model
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
    """``{"CDS": [...], "EDS": [...], "LDS": [...], "RDS": [...]}``, each resource with ``@type``."""
    resources = compile_node_resources(model, node, options, decisions=decisions)
    out: dict[str, list[object]] = {}
    for type_url in ORDER:
        items: list[object] = []
        for message in resources.get(type_url, {}).values():
            data = json_format.MessageToDict(message, preserving_proto_field_name=True)
            items.append({"@type": type_url, **data})
        out[short_name(type_url)] = items
    return json.dumps(out, indent=2, sort_keys=False) + "\n"
