"""``Service``: what a service listens on, its subsets, and its endpoints in each cluster."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from controlplane.policy.common import (
    Address,
    Label,
    Labels,
    Name,
    Port,
    PositiveMillis,
    Spec,
    StatusCode,
)

Protocol = Literal["HTTP", "HTTP2", "GRPC"]


class ServicePort(Spec):
    name: Label = "http"
    port: Port
    protocol: Protocol = "HTTP"


class Endpoint(Spec):
    cluster: Name
    address: Address
    port: Port | None = None  # defaults to the service's first port
    labels: Labels = Field(default_factory=dict)
    weight: int = Field(default=1, ge=1, le=128)


class Subset(Spec):
    name: Label
    labels: Labels


class HttpHealthCheck(Spec):
    path: str = "/healthz"
    host: str | None = None
    expected_statuses: tuple[StatusCode, ...] = Field(default=(200,), min_length=1)


class HealthCheck(Spec):
    http: HttpHealthCheck | None = None
    tcp: bool = False
    interval: PositiveMillis = 5000
    timeout: PositiveMillis = 1000
    healthy_threshold: int = Field(default=2, ge=1)
    unhealthy_threshold: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> HealthCheck:
        if (self.http is None) == (not self.tcp):
            raise ValueError("set exactly one of http or tcp")
        return self


class ServiceSpec(Spec):
    ports: tuple[ServicePort, ...] = Field(min_length=1)
    subsets: tuple[Subset, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    discovery: Literal["static", "api", "kubernetes"] = "static"
    health_check: HealthCheck | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> ServiceSpec:
        for what, names in (
            ("ports", [p.name for p in self.ports]),
            ("subsets", [s.name for s in self.subsets]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {what} name {dupes[0]!r}")
        return self

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)
