"""What applies to a service, looked up once per model: merged TrafficPolicy, placement, names.

A subset's TrafficPolicy overrides the service's field by field (as Istio's DestinationRule subset
``trafficPolicy`` does): a field the subset leaves unset is taken from the service's policy.

Lookups go through the model's own indexes (``Model.traffic_policy_for`` / ``placement_for``, built
once with the model), so a ``ModelIndex`` costs nothing to create: an incremental recompile that
touches one service does not pay for indexing ten thousand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controlplane.placement.static import PlacedCluster, place, residency_regions
from controlplane.policy.model import Model
from controlplane.policy.traffic import HashKey, TrafficPolicySpec
from controlplane.xds.compiler.options import cluster_name

_FIELDS = (
    "connect_timeout",
    "connection_pool",
    "outlier_detection",
    "load_balancer",
    "locality",
    "tls",
)

Decisions = Mapping[str, Sequence[PlacedCluster]]


def merge_traffic(
    base: TrafficPolicySpec | None, own: TrafficPolicySpec | None
) -> TrafficPolicySpec | None:
    if own is None or base is None:
        return own if own is not None else base
    update = {
        f: getattr(own, f) if getattr(own, f) is not None else getattr(base, f) for f in _FIELDS
    }
    return own.model_copy(update=update)


class ModelIndex:
    """Per-service lookups over one Model (and optional placement decisions overriding static)."""

    def __init__(self, model: Model, decisions: Decisions | None = None) -> None:
        self.model = model
        self._decisions = decisions or {}

    def _traffic(self, service: str, subset: str | None) -> TrafficPolicySpec | None:
        found = self.model.traffic_policy_for(service, subset)
        return found.spec if found is not None else None

    def traffic(self, service: str, subset: str | None = None) -> TrafficPolicySpec | None:
        base = self._traffic(service, None)
        if subset is None:
            return base
        return merge_traffic(base, self._traffic(service, subset))

    def traffic_inputs(self, service: str, subsets: Sequence[str]) -> tuple[object, ...]:
        """Every TrafficPolicy spec that can affect a service's clusters (for memo keys)."""
        return tuple(self._traffic(service, s) for s in (None, *subsets))

    def hash_key(self, service: str, subset: str | None) -> HashKey | None:
        traffic = self.traffic(service, subset)
        if traffic is None or traffic.load_balancer is None:
            return None
        return traffic.load_balancer.hash_key

    def cluster_name(self, service: str, subset: str | None, port: int | None) -> str:
        """The Envoy cluster a route destination names (the first port has no port suffix)."""
        svc = self.model.services.get(service)
        if port is not None and svc is not None and port == svc.spec.ports[0].port:
            port = None
        return cluster_name(service, subset, port)

    def is_grpc(self, service: str, port: int | None) -> bool:
        """Whether a destination's port (the first when unset) speaks gRPC."""
        svc = self.model.services.get(service)
        if svc is None:
            return False
        ports = svc.spec.ports
        return next((p for p in ports if p.port == port), ports[0]).protocol == "GRPC"

    def decided(self, service: str) -> bool:
        """Whether a placement engine Decision (not the static Placement) places ``service``."""
        return service in self._decisions

    def placed(self, service: str) -> tuple[PlacedCluster, ...]:
        if service in self._decisions:
            return tuple(self._decisions[service])
        return place(self.model, service)

    def residency(self, service: str) -> frozenset[str] | None:
        return residency_regions(self.model, service)
