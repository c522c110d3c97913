"""Everything one service contributes to a node: its clusters and their load assignments.

This is the unit of incremental compilation: its result depends only on ``ServiceInputs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from envoy.config.cluster.v3 import cluster_pb2

from controlplane.placement.static import PlacedCluster
from controlplane.policy.documents import Service
from controlplane.xds.compiler.clusters import build_cluster, cluster_targets
from controlplane.xds.compiler.eds_wire import WireAssignment
from controlplane.xds.compiler.effective import ModelIndex
from controlplane.xds.compiler.endpoints import (
    RemoteRule,
    build_load_assignment,
    endpoint_port,
    plan_decided,
    plan_localities,
)
from controlplane.xds.compiler.mtls import (
    build_inbound_cluster,
    gateways,
    is_mutual,
    sni,
    upstream_socket_match,
)
from controlplane.xds.compiler.options import CompileOptions, NodeIdentity

if TYPE_CHECKING:
    from controlplane.xds.compiler.basis import ServiceBasis


@dataclass(frozen=True, slots=True)
class ServiceResources:
    clusters: tuple[cluster_pb2.Cluster, ...]
    assignments: tuple[WireAssignment, ...]  # held as bytes (``eds_wire``)


@dataclass(frozen=True, slots=True)
class ServiceInputs:
    """What a service's resources are a function of (compared with ==, documents included)."""

    service: Service
    traffic: tuple[object, ...]
    placed: tuple[PlacedCluster, ...]
    decided: bool  # placed comes from a placement engine Decision (compiled differently)
    residency: frozenset[str] | None
    localities: tuple[tuple[str, str, str], ...]
    region: str
    options: CompileOptions
    # mutual TLS only (else "" and ()): the node's cluster and every east-west gateway
    home: str
    gateways: tuple[tuple[str, tuple[str, int]], ...]

    @classmethod
    def gather(
        cls,
        index: ModelIndex,
        name: str,
        node: NodeIdentity,
        options: CompileOptions,
        basis: ServiceBasis | None = None,
    ) -> ServiceInputs:
        """``basis``: the round's node-independent lookups for this service, if shared."""
        service = index.model.services[name]
        clusters = index.model.clusters
        if basis is not None:
            placed, mutual, traffic = basis.placed, basis.mutual, basis.traffic_inputs
            decided, residency = basis.decided, basis.residency
        else:
            placed, mutual = index.placed(name), _any_mutual(index, name)
            traffic = index.traffic_inputs(name, [s.name for s in service.spec.subsets])
            decided, residency = index.decided(name), index.residency(name)
        return cls(
            service=service,
            traffic=traffic,
            placed=placed,
            decided=decided,
            residency=residency,
            localities=tuple(
                (p.name, clusters[p.name].spec.region, clusters[p.name].spec.zone or "")
                for p in placed
                if p.name in clusters
            ),
            region=node.region,
            options=options,
            home=node.cluster if mutual else "",
            gateways=tuple(sorted(gateways(index.model).items())) if mutual else (),
        )


def _any_mutual(index: ModelIndex, name: str) -> bool:
    subsets = [s.name for s in index.model.services[name].spec.subsets]
    return any(is_mutual(index.traffic(name, s)) for s in (None, *subsets))


def compile_service(
    index: ModelIndex, name: str, node: NodeIdentity, options: CompileOptions
) -> ServiceResources:
    spec = index.model.services[name].spec
    placed = index.placed(name)
    residency = index.residency(name)
    decided = index.decided(name)
    clusters: list[cluster_pb2.Cluster] = []
    inbound: list[cluster_pb2.Cluster] = []
    assignments: list[WireAssignment] = []
    for cname, port, subset in cluster_targets(name, spec):
        traffic = index.traffic(name, subset)
        locality = traffic.locality if traffic is not None else None
        if decided:
            slots, weighted = plan_decided(placed, index.model.clusters, node, residency), True
        else:
            slots, weighted = plan_localities(
                placed, index.model.clusters, node, locality, residency
            )
        cluster = build_cluster(cname, port, spec, traffic, options, locality_weighted=weighted)
        chosen = spec.subset(subset) if subset is not None else None
        labels = chosen.labels if chosen is not None else None
        remote: RemoteRule | None = None
        if is_mutual(traffic):
            td = options.workload_trust_domain
            remote = RemoteRule(node.cluster, gateways(index.model) if td else {})
            if td:
                cluster.transport_socket_matches.append(
                    upstream_socket_match(name, sni(name, subset, port.port), td)
                )
            local = [
                (ep.address, endpoint_port(ep, spec, port), ep.weight)
                for ep in spec.endpoints
                if ep.cluster == node.cluster
                and all(ep.labels.get(k) == v for k, v in (labels or {}).items())
            ]
            if td and local and node.cluster in remote.gateways:
                inbound.append(build_inbound_cluster(cname, local, options))
        clusters.append(cluster)
        assignments.append(
            WireAssignment.of_message(
                build_load_assignment(cname, spec, port, labels, slots, remote=remote)
            )
        )
    return ServiceResources(tuple(clusters + inbound), tuple(assignments))
