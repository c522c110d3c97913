"""``Cluster``: a member cluster, region or edge site that can serve traffic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controlplane.policy.common import Address, Label, LabelKey, Labels, Port, Spec


class Taint(Spec):
    key: LabelKey
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule"] = "NoSchedule"


class Location(Spec):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    city: str | None = None


class Gateway(Spec):
    """The cluster's east-west gateway: where other clusters (and the GTM's answers) reach it."""

    address: Address
    port: Port = 443
    #: the gateway Envoy's mTLS listener for services whose TrafficPolicy has
    #: ``tls: {mode: ISTIO_MUTUAL}``; none: such services are not reachable here from elsewhere
    mtls_port: Port | None = None


class Capacity(Spec):
    requests_per_second: int | None = Field(default=None, ge=1)
    connections: int | None = Field(default=None, ge=1)


class ClusterSpec(Spec):
    region: Label
    zone: Label | None = None
    provider: str | None = None
    kind: Literal["cloud", "edge", "onprem"] = "cloud"
    labels: Labels = Field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    cost_weight: float = Field(default=1.0, ge=0)
    capacity: Capacity = Field(default_factory=Capacity)
    location: Location | None = None
    gateway: Gateway | None = None
