"""Registered endpoints (VMs, edge nodes) and how they join the policy model. Pure.

A registration names a Service whose ``discovery`` is ``api`` and carries one endpoint as a
Service lists it in YAML (cluster, address, port, labels, weight) plus a TTL. ``merge_registered``
returns the model with every live registration added to its Service's endpoints (so the xDS
compiler sends it as EDS, in its cluster's locality and subsets) and, for each GlobalService of
that service, added to the GTM's targets (answered at the endpoint's own address when its
cluster serves the service). The store's documents are never changed: a registration lives only
as long as its heartbeats.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, ValidationError

from controlplane.errors import UbiqError
from controlplane.gtm.from_model import steering_policy
from controlplane.placement.static import place
from controlplane.policy.documents import AnyDocument, GlobalService, Service
from controlplane.policy.globalservice import GlobalTarget
from controlplane.policy.model import Model
from controlplane.policy.service import Endpoint

DEFAULT_TTL_S = 15
MIN_TTL_S = 2  # etcd grants no shorter lease than ~1.5 election timeouts
MAX_TTL_S = 3600
MAX_REGISTRATIONS = 10_000
MAX_LABELS = 32
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RegistrationError(UbiqError):
    """A registration that cannot be accepted (one line: which field, what was expected)."""


class UnknownEndpoint(UbiqError):
    """No live registration by that service and id (never registered, deregistered or expired)."""


class Registration(Endpoint):
    """The API's request body: a Service endpoint as in YAML, plus ``ttl`` and an optional ``id``."""

    ttl: int = Field(default=DEFAULT_TTL_S, ge=MIN_TTL_S, le=MAX_TTL_S)
    id: str | None = Field(default=None, pattern=ID_RE.pattern)


@dataclass(frozen=True, slots=True)
class Registered:
    service: str
    id: str
    cluster: str
    address: str
    port: int | None
    labels: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1
    ttl_s: int = DEFAULT_TTL_S

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "id": self.id,
            "cluster": self.cluster,
            "address": self.address,
            "port": self.port,
            "labels": dict(self.labels),
            "weight": self.weight,
            "ttl": self.ttl_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Registered:
        return cls(
            service=str(data["service"]),
            id=str(data["id"]),
            cluster=str(data["cluster"]),
            address=str(data["address"]),
            port=None if data.get("port") is None else int(data["port"]),
            labels={str(k): str(v) for k, v in data.get("labels", {}).items()},
            weight=int(data.get("weight", 1)),
            ttl_s=int(data.get("ttl", DEFAULT_TTL_S)),
        )

    def endpoint(self) -> Endpoint:
        return Endpoint(
            cluster=self.cluster,
            address=self.address,
            port=self.port,
            labels=dict(self.labels),
            weight=self.weight,
        )


def default_id(cluster: str, address: str, port: int | None) -> str:
    raw = f"{cluster}.{address}.{port or 'default'}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:128]


def parse_registration(service: str, body: Mapping[str, Any]) -> Registered:
    """The API body as a registration (RegistrationError naming the field when it is not one)."""
    try:
        reg = Registration.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RegistrationError(f"{where}: {first['msg']}") from None
    if len(reg.labels) > MAX_LABELS:
        raise RegistrationError(f"labels: at most {MAX_LABELS}, got {len(reg.labels)}")
    return Registered(
        service=service,
        id=reg.id or default_id(reg.cluster, reg.address, reg.port),
        cluster=reg.cluster,
        address=reg.address,
        port=reg.port,
        labels=dict(reg.labels),
        weight=reg.weight,
        ttl_s=reg.ttl,
    )


def check_registration(model: Model, reg: Registered) -> None:
    """RegistrationError unless the model has the service (with ``discovery: api``) and cluster."""
    svc = model.services.get(reg.service)
    if svc is None:
        raise RegistrationError(f"service {reg.service!r}: no such Service in the policy")
    if svc.spec.discovery != "api":
        raise RegistrationError(
            f"service {reg.service!r}: discovery is {svc.spec.discovery!r}; endpoints can be"
            " registered only for a Service with discovery: api"
        )
    if reg.cluster not in model.clusters:
        raise RegistrationError(f"cluster: no such Cluster {reg.cluster!r} in the policy")


def _key(ep: Endpoint) -> tuple[str, str, int | None]:
    return (ep.cluster, ep.address, ep.port)


def merge_registered(model: Model, registered: Iterable[Registered]) -> Model:
    """``model`` with the live registrations added (the same object when none applies)."""
    by_service: dict[str, list[Registered]] = {}
    for reg in sorted(registered, key=lambda r: (r.service, r.id)):
        svc = model.services.get(reg.service)
        if svc is None or svc.spec.discovery != "api" or reg.cluster not in model.clusters:
            continue  # the policy changed since it registered: ignored until it matches again
        by_service.setdefault(reg.service, []).append(reg)
    if not by_service:
        return model
    services: dict[str, Service] = {}
    for name, regs in by_service.items():
        svc = model.services[name]
        endpoints = list(svc.spec.endpoints)
        seen = {_key(ep) for ep in endpoints}
        for reg in regs:
            ep = reg.endpoint()
            if _key(ep) not in seen:
                seen.add(_key(ep))
                endpoints.append(ep)
        spec = svc.spec.model_copy(update={"endpoints": tuple(endpoints)})
        services[name] = svc.model_copy(update={"spec": spec})
    docs: list[AnyDocument] = [
        services.get(d.name, d) if isinstance(d, Service) else d for d in model.documents()
    ]
    merged = Model.build(docs, model.sources)
    return _with_gtm_targets(merged, by_service)


def _with_gtm_targets(model: Model, by_service: Mapping[str, list[Registered]]) -> Model:
    changed: dict[str, GlobalService] = {}
    for name, gs in model.global_services.items():
        regs = by_service.get(gs.spec.service)
        if not regs:
            continue
        serving = {p.name for p in place(model, gs.spec.service)}
        current = steering_policy(model, name).targets
        targets = [
            GlobalTarget(
                cluster=t.cluster, address=t.address, port=t.port, weight=t.weight, tier=t.tier
            )
            for t in current
        ]
        held = {(t.cluster, t.address, t.port) for t in current}
        default_port = model.services[gs.spec.service].spec.ports[0].port
        for reg in regs:
            port = gs.spec.port or reg.port or default_port
            if reg.cluster not in serving or (reg.cluster, reg.address, port) in held:
                continue
            held.add((reg.cluster, reg.address, port))
            targets.append(
                GlobalTarget(cluster=reg.cluster, address=reg.address, port=port, weight=reg.weight)
            )
        spec = gs.spec.model_copy(update={"targets": tuple(targets)})
        changed[name] = gs.model_copy(update={"spec": spec})
    if not changed:
        return model
    docs: list[AnyDocument] = [
        changed.get(d.name, d) if isinstance(d, GlobalService) else d for d in model.documents()
    ]
    return Model.build(docs, model.sources)
