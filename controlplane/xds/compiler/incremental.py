"""Incremental node compile: the previous result plus a model diff -> what a full compile gives.

What a changed document can touch (everything else is taken from the previous result):

- Service, TrafficPolicy, Placement (the services named by the old *and* the new document), a
  changed placement decision -> that service's clusters and assignments, and the virtual host of
  every RoutePolicy that routes or mirrors to it (its first port shapes route cluster names, its
  TrafficPolicy the hash policy);
- RoutePolicy -> its own virtual host;
- GlobalService, Canary -> nothing: the compiler reads neither;
- Cluster (placement of every service may move), or anything else -> a full compile.

Rebuilt messages equal to the previous ones are swapped for the previous objects, and a resource
map with no change *is* the previous map, so ``Snapshot.build(..., previous=...)`` serializes only
what really changed. Pure and deterministic; the result equals a full ``generate.compile_node``
on the new model byte for byte
(tests/unit/test_xds_compiler_incremental.py). Nothing returned may be mutated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

from google.protobuf.message import Message

from controlplane.policy.diff import ModelDiff
from controlplane.policy.model import Model
from controlplane.xds.compiler.api_listeners import build_node_listeners
from controlplane.xds.compiler.eds_wire import WireAssignment
from controlplane.xds.compiler.effective import Decisions, ModelIndex
from controlplane.xds.compiler.generate import NodeCompilation, compile_node, routed_services
from controlplane.xds.compiler.memo import (
    CompileCache,
    build_service_resources,
    cached_virtual_host,
)
from controlplane.xds.compiler.route_wire import CompiledHost, patch_vhds_resources, reuse
from controlplane.xds.compiler.service import ServiceResources
from controlplane.xds.compiler.shared import RoundShare
from controlplane.xds.node import PROXYLESS_ROLE
from controlplane.xds.resources import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    VIRTUAL_HOST,
    PreSerialized,
    Spliced,
)

M = TypeVar("M")

#: kinds the compiler never reads
IGNORED_KINDS = frozenset({"GlobalService", "Canary"})


def recompile_node(
    previous: NodeCompilation,
    model: Model,
    changes: ModelDiff,
    *,
    decisions: Decisions | None = None,
    cache: CompileCache | None = None,
    shared: RoundShare | None = None,
) -> NodeCompilation:
    """``previous`` brought up to ``model``, where ``changes`` is ``diff(previous.model, model)``;
    ``shared`` as in ``compile_node``."""
    attributed = _attribute(previous, model, changes)
    if attributed is None:
        return compile_node(
            model,
            previous.node,
            previous.options,
            decisions=decisions,
            cache=cache,
            shared=shared,
        )
    affected, policies = attributed
    affected |= _changed_decisions(previous.decisions, decisions)
    node, options = previous.node, previous.options
    if shared is not None and not shared.fits(model, decisions, options):
        shared = None
    index = shared.index if shared is not None else ModelIndex(model, decisions)

    services: Mapping[str, ServiceResources] = previous.services
    if affected:
        edited = dict(previous.services)
        for name in affected:
            if name in model.services:
                new = build_service_resources(index, name, node, options, cache, shared)
                edited[name] = _reuse_service(new, previous.services.get(name))
            else:
                edited.pop(name, None)
        services = edited
    clusters, assignments = _patch_services(previous, services, affected)

    users = previous.routes_by_service
    if policies:
        users = _patch_users(users, previous.model, model, policies)
    rebuild = set(policies)
    for name in affected:
        rebuild |= previous.routes_by_service.get(name, frozenset())
        rebuild |= users.get(name, frozenset())
    hosts: _Patch[CompiledHost] = _Patch(previous.virtual_hosts)
    port = options.port_for(node)
    for name in sorted(rebuild):
        policy = model.route_policies.get(name)
        if policy is None:
            hosts.remove(name)
            continue
        host = cached_virtual_host(index, policy, port, cache, shared)
        hosts.put(name, reuse(previous.virtual_hosts.get(name), host))
    virtual_hosts = hosts.result()
    listeners = previous.resources[LISTENER]
    if node.role == PROXYLESS_ROLE and (affected or policies):
        # which hosts get an API listener depends on services' protocols and routes
        rebuilt = {x.name: x for x in build_node_listeners(model, node, options)}
        if rebuilt.keys() != listeners.keys():
            listeners = rebuilt
    return NodeCompilation.assemble(
        model,
        node,
        options,
        decisions,
        listeners=listeners,
        clusters=clusters,
        assignments=assignments,
        services=services,
        virtual_hosts=virtual_hosts,
        routes_by_service=users,
        routes=previous.resources[ROUTE] if virtual_hosts is previous.virtual_hosts else None,
        vhds=_patch_vhds(previous, virtual_hosts, rebuild),
    )


def _patch_vhds(
    previous: NodeCompilation, virtual_hosts: Mapping[str, CompiledHost], rebuilt: Iterable[str]
) -> Mapping[str, Message] | None:
    """The VHDS map with the rebuilt hosts swapped in (the previous map when none changed);
    None when the previous compile had none (``assemble`` then builds it whole if needed)."""
    old = previous.resources.get(VIRTUAL_HOST)
    if not isinstance(old, PreSerialized):
        return None
    if virtual_hosts is previous.virtual_hosts:
        return old
    name = previous.options.route_config_name
    return patch_vhds_resources(old, name, virtual_hosts, sorted(rebuilt))


def _attribute(
    previous: NodeCompilation, model: Model, changes: ModelDiff
) -> tuple[set[str], set[str]] | None:
    """(services to rebuild, RoutePolicies to rebuild); None when only a full compile will do."""
    affected: set[str] = set()
    policies: set[str] = set()
    for kind, name in changes:
        if kind == "Service":
            affected.add(name)
        elif kind == "TrafficPolicy":
            for m in (previous.model, model):
                traffic = m.traffic_policies.get(name)
                if traffic is not None:
                    affected.add(traffic.spec.service)
        elif kind == "Placement":
            for m in (previous.model, model):
                placement = m.placements.get(name)
                if placement is not None:
                    affected.add(placement.spec.service)
        elif kind == "RoutePolicy":
            policies.add(name)
        elif kind not in IGNORED_KINDS:
            return None
    return affected, policies


def _changed_decisions(old: Decisions | None, new: Decisions | None) -> set[str]:
    if old is new:
        return set()
    before, after = old or {}, new or {}

    def state(decisions: Decisions, name: str) -> tuple[bool, tuple[object, ...]]:
        return name in decisions, tuple(decisions.get(name, ()))

    return {n for n in before.keys() | after.keys() if state(before, n) != state(after, n)}


def _pick(old: M | None, new: M) -> M:
    return old if old is not None and old == new else new


def _pick_wire(old: WireAssignment | None, new: WireAssignment) -> WireAssignment:
    return old if old is not None and new.same(old) else new


def _reuse_service(new: ServiceResources, old: ServiceResources | None) -> ServiceResources:
    """``new``, with every message equal to one of ``old`` replaced by that object."""
    if old is None or old is new:
        return new
    old_clusters = {c.name: c for c in old.clusters}
    old_assignments = {a.cluster_name: a for a in old.assignments}
    clusters = tuple(_pick(old_clusters.get(c.name), c) for c in new.clusters)
    assignments = tuple(_pick_wire(old_assignments.get(a.cluster_name), a) for a in new.assignments)
    if _same_items(clusters, old.clusters) and _same_items(assignments, old.assignments):
        return old
    return ServiceResources(clusters, assignments)


def _same_items(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class _Patch(Generic[M]):
    """Copy-on-write edits of a name -> value map kept sorted by name.

    ``result()`` is the old map itself when no edit changed anything.
    """

    def __init__(self, old: Mapping[str, M]) -> None:
        self.old = old
        self.new: dict[str, M] | None = None
        self.grown = False

    def _current(self) -> Mapping[str, M]:
        return self.new if self.new is not None else self.old

    def _edit(self) -> dict[str, M]:
        if self.new is None:
            self.new = dict(self.old)
        return self.new

    def remove(self, name: str) -> None:
        if name in self._current():
            del self._edit()[name]

    def put(self, name: str, message: M) -> None:
        current = self._current()
        if current.get(name) is message:
            return
        self.grown = self.grown or name not in current
        self._edit()[name] = message

    def result(self) -> Mapping[str, M]:
        if self.new is None:
            return self.old
        return dict(sorted(self.new.items())) if self.grown else self.new


def _patch_services(
    previous: NodeCompilation, services: Mapping[str, ServiceResources], affected: Iterable[str]
) -> tuple[Mapping[str, Message], PreSerialized]:
    """CDS and EDS maps with the affected services' messages (EDS: held bytes) swapped in."""
    clusters: _Patch[Message] = _Patch(previous.resources[CLUSTER])
    eds = previous.resources[ENDPOINT]
    assert isinstance(eds, PreSerialized), "the compiler holds EDS as bytes"
    assignments: _Patch[Spliced[Message]] = _Patch(eds.held())
    for name in sorted(affected):
        old, new = previous.services.get(name), services.get(name)
        if old is new:
            continue
        old_c = old.clusters if old is not None else ()
        old_a = old.assignments if old is not None else ()
        new_c = new.clusters if new is not None else ()
        new_a = new.assignments if new is not None else ()
        for name_c in {c.name for c in old_c} - {c.name for c in new_c}:
            clusters.remove(name_c)
        for name_a in {a.cluster_name for a in old_a} - {a.cluster_name for a in new_a}:
            assignments.remove(name_a)
        for c in new_c:
            clusters.put(c.name, c)
        for a in new_a:
            assignments.put(a.cluster_name, a)
    held = assignments.result()
    return clusters.result(), eds if held is eds.held() else PreSerialized(held)


def _patch_users(
    users: Mapping[str, frozenset[str]], old: Model, new: Model, policies: Iterable[str]
) -> dict[str, frozenset[str]]:
    out = dict(users)
    for name in policies:
        before, after = old.route_policies.get(name), new.route_policies.get(name)
        for service in routed_services(before) if before is not None else set():
            left = out.get(service, frozenset()) - {name}
            if left:
                out[service] = left
            else:
                out.pop(service, None)
        for service in routed_services(after) if after is not None else set():
            out[service] = out.get(service, frozenset()) | {name}
    return out
