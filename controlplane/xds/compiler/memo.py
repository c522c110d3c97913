"""Memoised compile units: each service's clusters/assignments and each RoutePolicy's virtual host.

A ``CompileCache`` (optional, owned by the caller) keeps every unit with the inputs it was built
from; a hit needs equal inputs, so recompiling after one change rebuilds only what that change
touches. ``prune(model)`` forgets names the model no longer has. Returned messages are shared
with the cache and with earlier results: callers must not mutate them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from controlplane.policy.documents import RoutePolicy
from controlplane.policy.model import Model
from controlplane.xds.compiler.effective import ModelIndex
from controlplane.xds.compiler.options import CompileOptions, NodeIdentity
from controlplane.xds.compiler.route_wire import CompiledHost
from controlplane.xds.compiler.routes import build_virtual_host
from controlplane.xds.compiler.service import ServiceInputs, ServiceResources, compile_service
from controlplane.xds.compiler.shared import RoundShare

K = TypeVar("K")
V = TypeVar("V")


class _Memo(Generic[K, V]):
    """key -> (inputs, value); a hit needs equal inputs (identity is checked first, it is cheap)."""

    def __init__(self) -> None:
        self._entries: dict[K, tuple[object, V]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: K, inputs: object) -> V | None:
        entry = self._entries.get(key)
        if entry is not None and (entry[0] is inputs or entry[0] == inputs):
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def put(self, key: K, inputs: object, value: V) -> V:
        self._entries[key] = (inputs, value)
        return value

    def retain(self, keep: Callable[[K], bool]) -> int:
        """Drop the entries whose key fails ``keep``; returns how many were dropped."""
        gone = [key for key in self._entries if not keep(key)]
        for key in gone:
            del self._entries[key]
        return len(gone)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class CompileCache:
    #: (service, region, zone): a distribute rule may name the node's zone
    services: _Memo[tuple[str, str, str], ServiceResources] = field(default_factory=_Memo)
    virtual_hosts: _Memo[tuple[str, int], CompiledHost] = field(default_factory=_Memo)

    def prune(self, model: Model) -> int:
        """Forget services, regions and RoutePolicies ``model`` no longer has (a memo is keyed
        by name and would otherwise keep them forever); returns how many entries went."""
        regions = {cluster.spec.region for cluster in model.clusters.values()}
        services, policies = model.services, model.route_policies
        return self.services.retain(
            lambda key: key[0] in services and key[1] in regions
        ) + self.virtual_hosts.retain(lambda key: key[0] in policies)


@dataclass(frozen=True, slots=True)
class _VhostInputs:
    policy: RoutePolicy
    port: int
    names: tuple[str, ...]
    hash_keys: tuple[object, ...]
    grpc: tuple[bool, ...]


def _vhost_inputs(index: ModelIndex, policy: RoutePolicy, port: int) -> _VhostInputs:
    dests = [(d.service, d.subset, d.port) for rule in policy.spec.http for d in rule.route] + [
        (m.service, m.subset, m.port) for r in policy.spec.http for m in r.all_mirrors()
    ]
    return _VhostInputs(
        policy=policy,
        port=port,
        names=tuple(index.cluster_name(*d) for d in dests),
        hash_keys=tuple(index.hash_key(s, sub) for s, sub, _ in dests),
        grpc=tuple(index.is_grpc(s, p) for s, _, p in dests),
    )


def build_service_resources(
    index: ModelIndex,
    name: str,
    node: NodeIdentity,
    options: CompileOptions,
    cache: CompileCache | None = None,
    shared: RoundShare | None = None,
) -> ServiceResources:
    """``shared``: the round's units, for ``index``'s model, decisions and ``options``."""
    basis = shared.basis(name) if shared is not None else None
    if cache is None:
        return _compile(index, name, node, options, shared)
    inputs = ServiceInputs.gather(index, name, node, options, basis)
    key = (name, node.region, node.zone)
    found = cache.services.get(key, inputs)
    if found is not None:
        return found
    return cache.services.put(key, inputs, _compile(index, name, node, options, shared))


def _compile(
    index: ModelIndex,
    name: str,
    node: NodeIdentity,
    options: CompileOptions,
    shared: RoundShare | None,
) -> ServiceResources:
    if shared is not None and not shared.basis(name).mutual:
        return shared.service(name, node)
    return compile_service(index, name, node, options)


def cached_virtual_host(
    index: ModelIndex,
    policy: RoutePolicy,
    port: int,
    cache: CompileCache | None = None,
    shared: RoundShare | None = None,
) -> CompiledHost:
    """The policy's virtual host with its wire bytes (serialized once, memoised with it;
    with ``shared``, built once per round and port)."""
    if shared is not None:
        return shared.virtual_host(
            policy.name, port, lambda: cached_virtual_host(index, policy, port, cache)
        )
    if cache is None:
        return _compile_host(index, policy, port)
    inputs = _vhost_inputs(index, policy, port)
    key = (policy.name, port)
    found = cache.virtual_hosts.get(key, inputs)
    if found is not None:
        return found
    return cache.virtual_hosts.put(key, inputs, _compile_host(index, policy, port))


def _compile_host(index: ModelIndex, policy: RoutePolicy, port: int) -> CompiledHost:
    return CompiledHost.of(
        build_virtual_host(policy, port, index.cluster_name, index.hash_key, index.is_grpc)
    )


def build_virtual_hosts(
    index: ModelIndex,
    port: int,
    cache: CompileCache | None = None,
    shared: RoundShare | None = None,
) -> list[CompiledHost]:
    """One virtual host per RoutePolicy, in the model's order."""
    return [
        cached_virtual_host(index, policy, port, cache, shared)
        for policy in index.model.route_policies.values()
    ]
