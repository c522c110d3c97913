"""Who an xDS client is: node metadata keys, roles, and the group whose snapshot it receives.

Shared by the compiler (which shapes resources per role), the cache and server (which group
nodes) and the bootstrap (which writes the metadata): it imports nothing else of Ubiq's.
"""

from __future__ import annotations

from typing import Protocol

from envoy.config.core.v3 import base_pb2

#: node metadata key naming the Ubiq cluster the client runs in (else ``node.cluster``)
CLUSTER_KEY = "ubiq.cluster"
#: node metadata key naming the client's role
ROLE_KEY = "ubiq.role"
#: role of an Envoy proxy (the default when a node names none)
DEFAULT_ROLE = "proxy"
#: role of a proxyless gRPC client
PROXYLESS_ROLE = "grpc"


class NodeGrouper(Protocol):
    """Maps an Envoy's node to the group whose snapshot it receives."""

    def __call__(self, node: base_pb2.Node) -> str: ...


def group_key(cluster: str, role: str = DEFAULT_ROLE) -> str:
    return f"{cluster}/{role}"


def _metadata_string(node: base_pb2.Node, key: str) -> str:
    fields = node.metadata.fields
    if key in fields and fields[key].WhichOneof("kind") == "string_value":
        return str(fields[key].string_value)
    return ""


def node_cluster(node: base_pb2.Node) -> str:
    """The Ubiq cluster a node claims: metadata ``ubiq.cluster``, else ``node.cluster``."""
    return _metadata_string(node, CLUSTER_KEY) or str(node.cluster)


def group_by_cluster(node: base_pb2.Node) -> str:
    """Default grouping: Ubiq cluster (metadata ``ubiq.cluster``, else node.cluster) + role."""
    cluster = node_cluster(node)
    role = _metadata_string(node, ROLE_KEY) or DEFAULT_ROLE
    return group_key(cluster, role)
