"""Does an xDS client's certificate allow the node it claims? Pure: node and identity in.

With TLS on, each stream's first request names a node (id, ``ubiq.cluster`` metadata or
``node.cluster``); the client's certificate carries ``spiffe://TD/cluster/CLUSTER/node/NODE_ID``.
Both must agree, else the stream gets PERMISSION_DENIED before it is given anything: a proxy
holding a certificate for one cluster cannot read another cluster's configuration.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from envoy.config.core.v3 import base_pb2

from controlplane.errors import quoted
from controlplane.pki.certs import parse_node_spiffe_id
from controlplane.xds.node import node_cluster

#: gRPC's auth_context key holding the peer's SPIFFE ID (set when its certificate has exactly
#: one spiffe:// URI SAN)
SPIFFE_KEY = "peer_spiffe_id"


def peer_spiffe_ids(auth_context: Mapping[str, Iterable[bytes]]) -> list[str]:
    return [v.decode("utf-8", "replace") for v in auth_context.get(SPIFFE_KEY, ())]


def refusal(
    node: base_pb2.Node, spiffe_ids: Sequence[str], trust_domains: Collection[str]
) -> str | None:
    """Why this peer may not have this node's configuration; None when it may.

    ``trust_domains`` empty: any trust domain the client CA signed is accepted."""
    if len(spiffe_ids) != 1:
        return (
            "the client certificate must carry exactly one spiffe://TD/cluster/CLUSTER/node/NODE"
            f" URI SAN (found {len(spiffe_ids)})"
        )
    identity = parse_node_spiffe_id(spiffe_ids[0])
    if identity is None:
        return (
            f"client certificate identity {quoted(spiffe_ids[0], 120)} is not"
            " spiffe://TD/cluster/CLUSTER/node/NODE"
        )
    if trust_domains and identity.trust_domain not in trust_domains:
        return (
            f"client certificate trust domain {quoted(identity.trust_domain)} is not one of"
            f" {sorted(trust_domains)}"
        )
    cluster = node_cluster(node)
    if identity.cluster != cluster:
        return (
            f"node claims cluster {quoted(cluster)} but its certificate is for cluster"
            f" {quoted(identity.cluster)}"
        )
    if identity.node_id != node.id:
        return (
            f"node claims id {quoted(node.id)} but its certificate is for node"
            f" {quoted(identity.node_id)}"
        )
    if node.cluster and node.cluster != identity.cluster:
        return (
            f"node.cluster {quoted(node.cluster)} differs from its certificate's cluster"
            f" {quoted(identity.cluster)}"
        )
    return None
