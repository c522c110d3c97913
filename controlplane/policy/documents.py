"""The Kubernetes-style envelope (apiVersion, kind, metadata, spec) and the registry of kinds."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

from controlplane.policy.canary import CanarySpec
from controlplane.policy.cluster import ClusterSpec
from controlplane.policy.common import Metadata, Spec
from controlplane.policy.globalservice import GlobalServiceSpec
from controlplane.policy.placement import PlacementSpec
from controlplane.policy.route import RoutePolicySpec
from controlplane.policy.service import ServiceSpec
from controlplane.policy.traffic import TrafficPolicySpec

API_VERSION: Literal["ubiq.io/v1alpha1"] = "ubiq.io/v1alpha1"

S = TypeVar("S", bound=BaseModel)


class Document(Spec, Generic[S]):
    api_version: Literal["ubiq.io/v1alpha1"] = API_VERSION
    kind: str
    metadata: Metadata
    spec: S

    @property
    def name(self) -> str:
        return self.metadata.name


class Cluster(Document[ClusterSpec]):
    kind: Literal["Cluster"] = "Cluster"


class Service(Document[ServiceSpec]):
    kind: Literal["Service"] = "Service"


class RoutePolicy(Document[RoutePolicySpec]):
    kind: Literal["RoutePolicy"] = "RoutePolicy"


class TrafficPolicy(Document[TrafficPolicySpec]):
    kind: Literal["TrafficPolicy"] = "TrafficPolicy"


class Placement(Document[PlacementSpec]):
    kind: Literal["Placement"] = "Placement"


class GlobalService(Document[GlobalServiceSpec]):
    kind: Literal["GlobalService"] = "GlobalService"


class Canary(Document[CanarySpec]):
    kind: Literal["Canary"] = "Canary"


AnyDocument = Cluster | Service | RoutePolicy | TrafficPolicy | Placement | GlobalService | Canary

KINDS: dict[str, type[AnyDocument]] = {
    cls.model_fields["kind"].default: cls
    for cls in (Cluster, Service, RoutePolicy, TrafficPolicy, Placement, GlobalService, Canary)
}
