"""What a service's compiled resources draw on that no node changes (``shared.RoundShare``
works these out once per round; ``service`` reads them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controlplane.placement.static import PlacedCluster
from controlplane.policy.service import ServicePort, ServiceSpec
from controlplane.policy.traffic import TrafficPolicySpec


@dataclass(frozen=True, slots=True)
class Target:
    """One Envoy cluster of a service (a port, or a port x subset) and what shapes it."""

    name: str
    port: ServicePort
    subset: str | None
    traffic: TrafficPolicySpec | None
    labels: Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class ServiceBasis:
    """What a service's resources draw on that no node changes."""

    spec: ServiceSpec
    placed: tuple[PlacedCluster, ...]
    decided: bool
    residency: frozenset[str] | None
    traffic_inputs: tuple[object, ...]
    mutual: bool  # some target speaks mutual TLS: compiled per node, not shared
    targets: tuple[Target, ...]
