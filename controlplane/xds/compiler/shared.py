"""Compile units shared by the node groups of one round (one model, decisions and options).

Most of what a service contributes is the same from every node: its placement, its merged
TrafficPolicies, its Cluster messages (a node changes only whether locality weighting is on) and
each Ubiq cluster's endpoints; a node changes the priorities and weights of an assignment. A
``RoundShare`` works those out once per round and hands every group the same objects, so a
round's ``EntryMemo`` also serializes each shared message once. A service with a mutual-TLS
target (its clusters and assignments depend on the node's cluster) is compiled per node as
before. The result is byte-identical to compiling each group alone
(tests/unit/test_xds_compiler_shared.py). Nothing returned may be mutated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from envoy.config.cluster.v3 import cluster_pb2

from controlplane.policy.model import Model
from controlplane.policy.service import ServiceSpec
from controlplane.xds.compiler.basis import ServiceBasis, Target
from controlplane.xds.compiler.clusters import build_cluster, cluster_targets
from controlplane.xds.compiler.eds_wire import WireAssignment
from controlplane.xds.compiler.effective import Decisions, ModelIndex
from controlplane.xds.compiler.endpoints import (
    EndpointGroups,
    LocalitySlot,
    assemble_load_assignment,
    plan_decided,
    plan_localities,
)
from controlplane.xds.compiler.mtls import is_mutual
from controlplane.xds.compiler.options import CompileOptions, NodeIdentity
from controlplane.xds.compiler.route_wire import CompiledHost
from controlplane.xds.compiler.service import ServiceResources

K = TypeVar("K")
V = TypeVar("V")


class RoundShare:
    """Per-round memo of node-independent compile units; see the module docstring."""

    def __init__(self, model: Model, decisions: Decisions | None, options: CompileOptions) -> None:
        self.index = ModelIndex(model, decisions)
        self.decisions = decisions
        self.options = options
        self._bases: dict[str, ServiceBasis] = {}
        self._groups: dict[str, EndpointGroups] = {}
        self._clusters: dict[tuple[str, bool], cluster_pb2.Cluster] = {}
        self._assignments: dict[tuple[str, tuple[LocalitySlot, ...]], WireAssignment] = {}
        self._hosts: dict[tuple[str, int], CompiledHost] = {}
        self._plans: dict[tuple[object, ...], tuple[tuple[LocalitySlot, ...], bool]] = {}

    def fits(self, model: Model, decisions: Decisions | None, options: CompileOptions) -> bool:
        """Whether this round's units belong to these inputs (else compile without them)."""
        return (
            model is self.index.model
            and decisions is self.decisions
            and (options is self.options or options == self.options)
        )

    def basis(self, name: str) -> ServiceBasis:
        found = self._bases.get(name)
        if found is not None:
            return found
        index = self.index
        spec = index.model.services[name].spec
        targets = []
        for cname, port, subset in cluster_targets(name, spec):
            chosen = spec.subset(subset) if subset is not None else None
            labels = chosen.labels if chosen is not None else None
            targets.append(Target(cname, port, subset, index.traffic(name, subset), labels))
        subsets = [s.name for s in spec.subsets]
        basis = ServiceBasis(
            spec=spec,
            placed=index.placed(name),
            decided=index.decided(name),
            residency=index.residency(name),
            traffic_inputs=index.traffic_inputs(name, subsets),
            mutual=any(is_mutual(index.traffic(name, s)) for s in (None, *subsets)),
            targets=tuple(targets),
        )
        self._bases[name] = basis
        return basis

    def service(self, name: str, node: NodeIdentity) -> ServiceResources:
        """A non-mutual service's clusters and assignments as ``node`` sees them."""
        basis = self.basis(name)
        assert not basis.mutual, "a mutual-TLS service is compiled per node"
        clusters: list[cluster_pb2.Cluster] = []
        assignments: list[WireAssignment] = []
        for target in basis.targets:
            slots, weighted = self._plan(basis, target, node)
            cluster = self._clusters.get((target.name, weighted))
            if cluster is None:
                cluster = self._clusters[target.name, weighted] = build_cluster(
                    target.name,
                    target.port,
                    basis.spec,
                    target.traffic,
                    self.options,
                    locality_weighted=weighted,
                )
            assignment = self._assignments.get((target.name, slots))
            if assignment is None:
                groups = self._endpoint_groups(basis.spec, target)
                assignment = self._assignments[target.name, slots] = assemble_load_assignment(
                    target.name, groups, slots
                )
            clusters.append(cluster)
            assignments.append(assignment)
        return ServiceResources(tuple(clusters), tuple(assignments))

    def _plan(
        self, basis: ServiceBasis, target: Target, node: NodeIdentity
    ) -> tuple[tuple[LocalitySlot, ...], bool]:
        """The target's locality slots from ``node``; without a locality rule they depend only
        on the placement, the residency and where the node is, so services alike share them."""
        clusters_of = self.index.model.clusters
        if basis.decided:
            return plan_decided(basis.placed, clusters_of, node, basis.residency), True
        locality = target.traffic.locality if target.traffic is not None else None
        if locality is not None:
            return plan_localities(basis.placed, clusters_of, node, locality, basis.residency)
        return _memo(
            self._plans,
            (basis.placed, basis.residency, node.region, node.zone),
            lambda: plan_localities(basis.placed, clusters_of, node, None, basis.residency),
        )

    def virtual_host(
        self, policy_name: str, port: int, build: Callable[[], CompiledHost]
    ) -> CompiledHost:
        return _memo(self._hosts, (policy_name, port), build)

    def _endpoint_groups(self, spec: ServiceSpec, target: Target) -> EndpointGroups:
        found = self._groups.get(target.name)
        if found is None:
            found = self._groups[target.name] = EndpointGroups.of(spec, target.port, target.labels)
        return found


def _memo(memo: dict[K, V], key: K, build: Callable[[], V]) -> V:
    found = memo.get(key)
    if found is None:
        found = memo[key] = build()
    return found
