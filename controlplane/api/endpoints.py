"""``/v1/endpoints``: VMs and edge nodes register themselves, heartbeat, deregister.

A registration is for a Service with ``discovery: api``; it lives as long as heartbeats come
within its TTL (see controlplane/endpoints/). ``endpoints_router(runtime)`` is included by the
application; ``runtime.endpoints`` is the registry (None: registration is off) and
``runtime.store_model()`` the policy the registrations are checked against.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response

from controlplane.api.auth import require_scope
from controlplane.api.models import HeartbeatReply, ProblemDetails, RegisteredEndpoint
from controlplane.endpoints.model import (
    ID_RE,
    RegistrationError,
    UnknownEndpoint,
    check_registration,
    parse_registration,
)
from controlplane.endpoints.registry import EndpointRegistry
from controlplane.etcd.client import EtcdError
from controlplane.policy.model import Model

log = structlog.get_logger("ubiq.api.endpoints")

SERVICE = Path(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
ENDPOINT_ID = Path(pattern=ID_RE.pattern)
MAX_BODY_BYTES = 16 * 1024  # a registration is a few hundred bytes


async def json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to MAX_BODY_BYTES (413 past it, 400 if not JSON)."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise HTTPException(413, f"body: at most {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise HTTPException(400, f"body: expected a JSON object ({exc})") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "body: expected a JSON object")
    return data


class EndpointsView(Protocol):
    endpoints: EndpointRegistry | None

    def store_model(self) -> Model: ...


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDetails, "content": {"application/problem+json": {}}}
    for status in (400, 401, 403, 404, 409, 413, 421, 422, 503)
}
READ = [Depends(require_scope("read"))]
WRITE = [Depends(require_scope("write"))]


def endpoints_router(runtime: object) -> APIRouter:
    router = APIRouter(prefix="/v1/endpoints", tags=["endpoints"], responses=ERRORS)

    def registry() -> EndpointRegistry:
        found: EndpointRegistry | None = getattr(runtime, "endpoints", None)
        if found is None:
            raise HTTPException(503, "endpoint registration is off in this process")
        return found

    @router.post(
        "/{service}", status_code=201, dependencies=WRITE, response_model=RegisteredEndpoint
    )
    async def register(request: Request, service: str = SERVICE) -> Any:
        """Register (or re-register) one endpoint of ``service``; send heartbeats within ``ttl``."""
        held = registry()
        body = await json_object(request)
        view: EndpointsView = runtime  # type: ignore[assignment]
        try:
            reg = parse_registration(service, body)
            check_registration(view.store_model(), reg)
            await held.register(reg)
        except RegistrationError as exc:
            raise HTTPException(422, str(exc)) from None
        except EtcdError as exc:
            raise HTTPException(503, f"store unavailable: {exc}") from None
        log.info("endpoint.registered", service=service, id=reg.id, ttl=reg.ttl_s)
        return reg.as_dict()

    @router.post(
        "/{service}/{endpoint_id}/heartbeat", dependencies=WRITE, response_model=HeartbeatReply
    )
    async def heartbeat(service: str = SERVICE, endpoint_id: str = ENDPOINT_ID) -> Any:
        try:
            ttl = await registry().heartbeat(service, endpoint_id)
        except UnknownEndpoint as exc:
            raise HTTPException(404, str(exc)) from None
        except EtcdError as exc:
            raise HTTPException(503, f"store unavailable: {exc}") from None
        return {"service": service, "id": endpoint_id, "ttl": ttl}

    @router.delete("/{service}/{endpoint_id}", status_code=204, dependencies=WRITE)
    async def deregister(service: str = SERVICE, endpoint_id: str = ENDPOINT_ID) -> Response:
        try:
            await registry().deregister(service, endpoint_id)
        except UnknownEndpoint as exc:
            raise HTTPException(404, str(exc)) from None
        except EtcdError as exc:
            raise HTTPException(503, f"store unavailable: {exc}") from None
        log.info("endpoint.deregistered", service=service, id=endpoint_id)
        return Response(status_code=204)

    @router.get("", dependencies=READ, response_model=list[RegisteredEndpoint])
    async def listing() -> Any:
        return [r.as_dict() for r in registry().registered()]

    @router.get("/{service}", dependencies=READ, response_model=list[RegisteredEndpoint])
    async def of_service(service: str = SERVICE) -> Any:
        return [r.as_dict() for r in registry().registered() if r.service == service]

    return router
