"""``GlobalService``: a DNS name served by the GTM and how it steers clients to regions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from controlplane.policy.common import (
    Address,
    Hostname,
    Label,
    Millis,
    Name,
    Network,
    Port,
    PositiveMillis,
    Spec,
    StatusCode,
)

GtmStrategy = Literal["failover", "weighted", "geo", "lowestLatency", "roundRobin"]


class GtmHttpCheck(Spec):
    path: str = "/healthz"
    host: str | None = None
    scheme: Literal["http", "https"] = "http"
    port: Port | None = None
    expected_statuses: tuple[StatusCode, ...] = Field(default=(200,), min_length=1)
    verify_tls: bool = True


class GtmTcpCheck(Spec):
    port: Port | None = None


class GtmHealthCheck(Spec):
    http: GtmHttpCheck | None = None
    tcp: GtmTcpCheck | None = None
    interval: PositiveMillis = 5000
    timeout: PositiveMillis = 1000
    jitter: Millis = 0
    healthy_threshold: int = Field(default=2, ge=1)
    unhealthy_threshold: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> GtmHealthCheck:
        if (self.http is None) == (self.tcp is None):
            raise ValueError("set exactly one of http or tcp")
        if self.timeout > self.interval:
            raise ValueError("timeout must not exceed interval")
        return self


class GlobalTarget(Spec):
    """An answer candidate; by default every cluster the service is placed in, at its gateway."""

    cluster: Name
    address: Address | None = None
    port: Port | None = None
    weight: int = Field(default=1, ge=0, le=1000)
    tier: int = Field(default=0, ge=0)


class ClientGroupSpec(Spec):
    name: Label
    cidrs: tuple[Network, ...] = Field(min_length=1)
    region: Label | None = None


class GlobalServiceSpec(Spec):
    name: Hostname
    zone: Hostname
    aliases: tuple[Hostname, ...] = ()  # other names in the zone, answered as CNAMEs to ``name``
    service: Name
    port: Port | None = None
    strategy: GtmStrategy = "failover"
    ttl: Millis = 30_000
    max_answers: int = Field(default=1, ge=1, le=8)
    targets: tuple[GlobalTarget, ...] = ()
    client_groups: tuple[ClientGroupSpec, ...] = ()
    geo: dict[Label, tuple[Label, ...]] = Field(default_factory=dict)
    geo_database: str | None = None
    latency: dict[Label, dict[Label, Millis]] = Field(default_factory=dict)
    health_check: GtmHealthCheck | None = None
    all_down: Literal["answerAll", "fallback", "servfail"] = "answerAll"
    fallback: tuple[Address, ...] = ()
    sticky: bool = True

    @model_validator(mode="after")
    def _coherent(self) -> GlobalServiceSpec:
        name, zone = self.name.rstrip("."), self.zone.rstrip(".")
        if name != zone and not name.endswith("." + zone):
            raise ValueError(f"name {self.name!r} is not inside zone {self.zone!r}")
        for alias in self.aliases:
            bare = alias.rstrip(".")
            if bare == name or not bare.endswith("." + zone):
                raise ValueError(f"alias {alias!r} must be another name inside zone {self.zone!r}")
        if self.all_down == "fallback" and not self.fallback:
            raise ValueError("allDown fallback needs fallback addresses")
        if self.ttl % 1000:
            raise ValueError(f"ttl is whole seconds in DNS, got {self.ttl}ms")
        return self
