"""The xDS compiler: pure functions from the policy model to Envoy v3 resources (see generate)."""

from __future__ import annotations

from controlplane.xds.compiler.generate import compile_node_resources
from controlplane.xds.compiler.memo import CompileCache
from controlplane.xds.compiler.options import CompileOptions, NodeIdentity, cluster_name

__all__ = [
    "CompileCache",
    "CompileOptions",
    "NodeIdentity",
    "cluster_name",
    "compile_node_resources",
]
