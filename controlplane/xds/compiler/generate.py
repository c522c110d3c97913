"""The compiler's entry point: (model, placement decisions, node) -> Envoy v3 resources.

Pure and deterministic: no I/O, no clocks; resources come out sorted by name and equal inputs give
byte-identical serializations. An optional ``CompileCache`` (see ``memo``) makes recompiles
rebuild only what changed; ``incremental.recompile_node`` starts from a ``NodeCompilation``.
Returned messages may be shared with the cache and with earlier results: callers must not
mutate them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane.policy.documents import RoutePolicy
from controlplane.policy.model import Model
from controlplane.xds.compiler.api_listeners import build_node_listeners
from controlplane.xds.compiler.eds_wire import WireAssignment
from controlplane.xds.compiler.effective import Decisions, ModelIndex
from controlplane.xds.compiler.memo import (
    CompileCache,
    build_service_resources,
    build_virtual_hosts,
)
from controlplane.xds.compiler.options import CompileOptions, NodeIdentity
from controlplane.xds.compiler.route_wire import (
    CompiledHost,
    route_configuration,
    vhds_resources,
)
from controlplane.xds.compiler.service import ServiceResources
from controlplane.xds.compiler.shared import RoundShare
from controlplane.xds.compiler.vhds import uses_vhds, vhds_route_configuration
from controlplane.xds.resources import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    VIRTUAL_HOST,
    PreSerialized,
)


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


@dataclass(frozen=True, slots=True)
class NodeCompilation:
    """One node's compiled resources and what an incremental recompile starts from.

    Built only by ``assemble`` (the full compile and the incremental one alike)."""

    model: Model
    node: NodeIdentity
    options: CompileOptions
    decisions: Decisions | None
    resources: Mapping[str, Mapping[str, Message]]
    services: Mapping[str, ServiceResources]
    #: RoutePolicy name -> its virtual host with its wire bytes, in RouteConfiguration order
    virtual_hosts: Mapping[str, CompiledHost]
    #: service -> names of the RoutePolicies whose routes or mirrors name it
    routes_by_service: Mapping[str, frozenset[str]]

    @classmethod
    def assemble(
        cls,
        model: Model,
        node: NodeIdentity,
        options: CompileOptions,
        decisions: Decisions | None,
        *,
        listeners: Mapping[str, Message],
        clusters: Mapping[str, Message],
        assignments: PreSerialized,
        services: Mapping[str, ServiceResources],
        virtual_hosts: Mapping[str, CompiledHost],
        routes_by_service: Mapping[str, frozenset[str]],
        routes: Mapping[str, Message] | None = None,
        vhds: Mapping[str, Message] | None = None,
    ) -> NodeCompilation:
        """The compilation of these parts; ``routes`` (the RouteConfiguration map) is spliced
        from ``virtual_hosts`` unless given (an unchanged one is passed on as is). With VHDS
        (``vhds.uses_vhds``) the RouteConfiguration only names the VHDS source and the hosts
        are VirtualHost resources (``vhds``, likewise passed on when unchanged). The EDS map
        ``assignments`` holds each ClusterLoadAssignment as bytes (``eds_wire``)."""
        name = options.route_config_name
        resources: dict[str, Mapping[str, Message]]
        if uses_vhds(options, node):
            assert options.vhds_cluster is not None
            resources = {
                LISTENER: listeners,
                ROUTE: vhds_route_configuration(name, options.vhds_cluster),
                CLUSTER: clusters,
                ENDPOINT: assignments,
                VIRTUAL_HOST: vhds
                if vhds is not None
                else vhds_resources(name, virtual_hosts.values()),
            }
        else:
            if routes is None:
                routes = route_configuration(name, virtual_hosts.values())
            resources = {
                LISTENER: listeners,
                ROUTE: routes,
                CLUSTER: clusters,
                ENDPOINT: assignments,
            }
        return cls(
            model=model,
            node=node,
            options=options,
            decisions=decisions,
            resources=resources,
            services=services,
            virtual_hosts=virtual_hosts,
            routes_by_service=routes_by_service,
        )


def routed_services(policy: RoutePolicy) -> set[str]:
    found = {d.service for rule in policy.spec.http for d in rule.route}
    found.update(m.service for rule in policy.spec.http for m in rule.all_mirrors())
    return found


def compile_node(
    model: Model,
    node: NodeIdentity,
    options: CompileOptions | None = None,
    *,
    decisions: Decisions | None = None,
    cache: CompileCache | None = None,
    shared: RoundShare | None = None,
) -> NodeCompilation:
    """A full compile that also keeps what ``recompile_node`` starts from. ``shared``: the
    units of this round's other node groups (used only if made for this model, decisions and
    options); the result is the same with or without it."""
    options = options or CompileOptions()
    if shared is not None and not shared.fits(model, decisions, options):
        shared = None
    index = shared.index if shared is not None else ModelIndex(model, decisions)
    services = {
        name: build_service_resources(index, name, node, options, cache, shared)
        for name in sorted(model.services)
    }
    hosts = build_virtual_hosts(index, options.port_for(node), cache, shared)
    virtual_hosts = dict(zip(model.route_policies, hosts, strict=True))
    users: dict[str, set[str]] = {}
    for policy in model.route_policies.values():
        for service in routed_services(policy):
            users.setdefault(service, set()).add(policy.name)
    clusters: dict[str, Message] = {}
    assignments: dict[str, WireAssignment] = {}
    for result in services.values():
        clusters.update((c.name, c) for c in result.clusters)
        assignments.update((a.cluster_name, a) for a in result.assignments)
    return NodeCompilation.assemble(
        model,
        node,
        options,
        decisions,
        listeners={x.name: x for x in build_node_listeners(model, node, options)},
        clusters=dict(sorted(clusters.items())),
        assignments=PreSerialized(dict(sorted(assignments.items()))),
        services=services,
        virtual_hosts=virtual_hosts,
        routes_by_service={s: frozenset(p) for s, p in users.items()},
    )
