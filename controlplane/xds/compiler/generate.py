"""The compiler's entry point: (model, placement decisions, node) -> Envoy v3 resources.

Pure and deterministic: no I/O, no clocks; resources come out sorted by name and equal inputs give
byte-identical serializations. An optional ``CompileCache`` (see ``memo``) makes recompiles
rebuild only what changed. Returned messages may be shared with the cache and with earlier
results: callers must not mutate them.
"""

from __future__ import annotations

from google.protobuf.message import Message

from controlplane.policy.model import Model
from controlplane.xds.compiler.effective import Decisions
from controlplane.xds.compiler.incremental import compile_node
from controlplane.xds.compiler.memo import CompileCache
from controlplane.xds.compiler.options import CompileOptions, NodeIdentity


def compile_node_resources(
    model: Model,
    node: NodeIdentity,
    options: CompileOptions | None = None,
    *,
    decisions: Decisions | None = None,
    cache: CompileCache | None = None,
) -> dict[str, dict[str, Message]]:
    """Every resource ``node`` should have: type_url -> name -> message, names sorted."""
    compiled = compile_node(model, node, options, decisions=decisions, cache=cache)
    return {type_url: dict(by_name) for type_url, by_name in compiled.resources.items()}
