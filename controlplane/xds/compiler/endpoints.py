"""EDS: where a node sends a service's traffic, as Envoy priorities and localities.

Invariants (all per node region; see docs/xds.md "Compiler"):
- a locality is one Ubiq cluster: ``Locality(region, zone, sub_zone=<cluster name>)``;
- the node's own region is priority 0; other regions follow as failover priorities, ordered by the
  TrafficPolicy's ``locality.failoverRegions``, then ``locality.failover`` targets of the node's
  region, then Placement order. Priorities are renumbered densely over the localities that have endpoints;
- ``locality.distribute`` for the node's zone (``region/zone``), else for its region, puts the
  listed regions and zones (``region/zone``) at priority 0 with locality weights (the Cluster then
  enables locality-weighted balancing); a zone's weight is shared by the endpoints of its clusters,
  a region's by the rest of the region; unlisted localities get none;
- ``locality.enabled: false`` puts every placed cluster at priority 0;
- data residency: endpoints outside a service's boundary are never emitted, and a node outside the
  boundary gets an empty assignment (Envoy answers 503): the proxy would otherwise carry the
  service's payload outside the boundary;
- placed clusters with weight 0 ("placed, no traffic") get no endpoints.

A service with a placement engine Decision (``plan_decided``) is compiled the same from every
node: the Decision wins over ``locality`` (distribute, failover, enabled). Each placed cluster with
weight > 0 is a locality at the Decision's priority whose ``load_balancing_weight`` is the
Decision's percent; a weight-0 cluster at priority > 0 is a standby locality (weight 1) at that
priority; a weight-0 cluster at priority 0 is left out. Residency applies as above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import wrappers_pb2

from controlplane.placement.static import PlacedCluster
from controlplane.policy.documents import Cluster
from controlplane.policy.service import Endpoint, ServicePort, ServiceSpec
from controlplane.policy.traffic import Locality
from controlplane.xds.compiler.eds_wire import WireAssignment, assignment, locality_field
from controlplane.xds.compiler.options import NodeIdentity

_WEIGHT_SCALE = 1000


@dataclass(frozen=True, slots=True)
class LocalitySlot:
    """One Ubiq cluster's place in a node's view of a service."""

    cluster: str
    region: str
    zone: str
    priority: int
    weight: int | None = None  # locality weight in percent (distribute), else None
    share: str = ""  # distribute: the region or region/zone whose weight this slot shares
    exact: bool = False  # weight is the locality's load_balancing_weight as is (a Decision)


def plan_localities(
    placed: Sequence[PlacedCluster],
    clusters: Mapping[str, Cluster],
    node: NodeIdentity,
    locality: Locality | None,
    residency: frozenset[str] | None,
) -> tuple[tuple[LocalitySlot, ...], bool]:
    """(slots, locality_weighted) for one service as seen from ``node``."""
    if residency is not None and node.region not in residency:
        return (), False
    usable = [
        p
        for p in placed
        if p.weight > 0
        and p.name in clusters
        and (residency is None or clusters[p.name].spec.region in residency)
    ]

    def slot(p: PlacedCluster, priority: int, weight: int | None = None) -> LocalitySlot:
        spec = clusters[p.name].spec
        return LocalitySlot(p.name, spec.region, spec.zone or "", priority, weight)

    if locality is not None and not locality.enabled:
        return tuple(slot(p, 0) for p in usable), False
    if locality is not None:
        here = f"{node.region}/{node.zone}"
        rules = locality.distribute
        rule = next((d for d in rules if d.from_ == here), None) or next(
            (d for d in rules if d.from_ == node.region), None
        )
        if rule is not None:
            slots = []
            for p in usable:
                zone = f"{p.region}/{clusters[p.name].spec.zone or ''}"
                share = zone if zone in rule.to else p.region
                if rule.to.get(share, 0) > 0:
                    slots.append(replace(slot(p, 0, rule.to[share]), share=share))
            return tuple(slots), True
    order = [node.region]
    if locality is not None:
        order += [r for r in locality.failover_regions if r not in order]
        order += [f.to for f in locality.failover if f.from_ == node.region and f.to not in order]
    order += [p.region for p in usable]
    rank: dict[str, int] = {}
    for region in order:
        rank.setdefault(region, len(rank))
    return tuple(slot(p, rank[p.region]) for p in usable), False


def plan_decided(
    placed: Sequence[PlacedCluster],
    clusters: Mapping[str, Cluster],
    node: NodeIdentity,
    residency: frozenset[str] | None,
) -> tuple[LocalitySlot, ...]:
    """Slots for a service the placement engine decided: its weights and priorities, as is."""
    if residency is not None and node.region not in residency:
        return ()
    slots = []
    for p in placed:
        if p.name not in clusters or (p.weight <= 0 and p.priority <= 0):
            continue
        spec = clusters[p.name].spec
        if residency is not None and spec.region not in residency:
            continue
        weight = p.weight if p.weight > 0 else 1
        slots.append(
            LocalitySlot(p.name, spec.region, spec.zone or "", p.priority, weight, exact=True)
        )
    return tuple(slots)


def endpoint_port(endpoint: Endpoint, service: ServiceSpec, port: ServicePort) -> int:
    """An endpoint's own port serves the service's first port; other ports keep their number."""
    if port is service.ports[0]:
        return endpoint.port or port.port
    return port.port


@dataclass(frozen=True, slots=True)
class RemoteRule:
    """Mutual TLS (see ``mtls``): endpoints outside ``home`` are reached through their cluster's
    gateway ``(address, mtlsPort)``; a cluster missing from ``gateways`` gets none."""

    home: str
    gateways: Mapping[str, tuple[str, int]]


def build_load_assignment(
    name: str,
    service: ServiceSpec,
    port: ServicePort,
    labels: Mapping[str, str] | None,
    slots: Sequence[LocalitySlot],
    *,
    remote: RemoteRule | None = None,
) -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    by_cluster: dict[str, list[Endpoint]] = {}
    for ep in service.endpoints:
        if labels and any(ep.labels.get(k) != v for k, v in labels.items()):
            continue
        if remote is not None and ep.cluster != remote.home and ep.cluster not in remote.gateways:
            continue  # never plaintext across clusters for a mutual service
        by_cluster.setdefault(ep.cluster, []).append(ep)
    share_totals: dict[str, int] = {}
    for s in slots:
        total = sum(ep.weight for ep in by_cluster.get(s.cluster, ()))
        share_totals[s.share] = share_totals.get(s.share, 0) + total
    kept = sorted(
        (s for s in slots if by_cluster.get(s.cluster)), key=lambda s: (s.priority, s.cluster)
    )
    dense = {p: i for i, p in enumerate(sorted({s.priority for s in kept}))}
    for s in kept:
        members = by_cluster[s.cluster]
        total = sum(ep.weight for ep in members)
        if s.weight is None:
            weight = total
        elif s.exact:
            weight = s.weight
        else:
            weight = max(1, round(s.weight * _WEIGHT_SCALE * total / share_totals[s.share]))
        group = cla.endpoints.add(
            locality=base_pb2.Locality(region=s.region, zone=s.zone, sub_zone=s.cluster),
            priority=dense[s.priority],
        )
        group.load_balancing_weight.value = weight
        if remote is not None and s.cluster != remote.home:
            from controlplane.xds.compiler.mtls import gateway_endpoint

            address, mtls_port = remote.gateways[s.cluster]
            group.lb_endpoints.append(gateway_endpoint(address, mtls_port, total))
            continue
        group.lb_endpoints.extend(lb_endpoint(ep, service, port) for ep in members)
    return cla


def lb_endpoint(ep: Endpoint, service: ServiceSpec, port: ServicePort) -> ec_pb2.LbEndpoint:
    return ec_pb2.LbEndpoint(
        endpoint=ec_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(
                    address=ep.address, port_value=endpoint_port(ep, service, port)
                )
            )
        ),
        load_balancing_weight=wrappers_pb2.UInt32Value(value=ep.weight),
    )


@dataclass(slots=True)
class EndpointGroups:
    """One Envoy cluster's endpoints by Ubiq cluster, and each cluster's locality with its
    LbEndpoints serialized once (``locality``): the part of an assignment no node changes,
    shared by the node groups of a round (``shared.RoundShare``). Not for mutual TLS
    (``RemoteRule``)."""

    service: ServiceSpec
    port: ServicePort
    by_cluster: dict[str, list[Endpoint]]
    totals: dict[str, int]
    _localities: dict[tuple[str, str, str], bytes]

    @classmethod
    def of(
        cls, service: ServiceSpec, port: ServicePort, labels: Mapping[str, str] | None
    ) -> EndpointGroups:
        by_cluster: dict[str, list[Endpoint]] = {}
        for ep in service.endpoints:
            if labels and any(ep.labels.get(k) != v for k, v in labels.items()):
                continue
            by_cluster.setdefault(ep.cluster, []).append(ep)
        totals = {c: sum(ep.weight for ep in eps) for c, eps in by_cluster.items()}
        return cls(service, port, by_cluster, totals, {})

    def locality(self, slot: LocalitySlot) -> bytes:
        """The slot's ``LocalityLbEndpoints`` (locality and endpoints, without priority or
        weight), serialized once."""
        key = (slot.cluster, slot.region, slot.zone)
        found = self._localities.get(key)
        if found is not None:
            return found
        group = ec_pb2.LocalityLbEndpoints(
            locality=base_pb2.Locality(region=slot.region, zone=slot.zone, sub_zone=slot.cluster)
        )
        group.lb_endpoints.extend(
            lb_endpoint(ep, self.service, self.port) for ep in self.by_cluster[slot.cluster]
        )
        data: bytes = group.SerializeToString(deterministic=True)
        self._localities[key] = data
        return data


def assemble_load_assignment(
    name: str, groups: EndpointGroups, slots: Sequence[LocalitySlot]
) -> WireAssignment:
    """``build_load_assignment(name, ..., slots)`` without mutual TLS, from prepared groups:
    the same message's bytes, spliced from each locality's bytes (no message is built)."""
    totals = groups.totals
    share_totals: dict[str, int] = {}
    for s in slots:
        share_totals[s.share] = share_totals.get(s.share, 0) + totals.get(s.cluster, 0)
    kept = sorted((s for s in slots if s.cluster in totals), key=lambda s: (s.priority, s.cluster))
    dense = {p: i for i, p in enumerate(sorted({s.priority for s in kept}))}
    fields = []
    for s in kept:
        total = totals[s.cluster]
        if s.weight is None:
            weight = total
        elif s.exact:
            weight = s.weight
        else:
            weight = max(1, round(s.weight * _WEIGHT_SCALE * total / share_totals[s.share]))
        fields.append(locality_field(groups.locality(s), dense[s.priority], weight))
    return assignment(name, fields)
