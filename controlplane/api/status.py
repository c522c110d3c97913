"""Read-only views of the running server: status, proxies, GTM, placement, canaries; and the
canary commands (``write`` scope)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from controlplane.api.auth import require_scope
from controlplane.api.keys import camelize
from controlplane.api.models import (
    CanaryState,
    GtmExplanation,
    GtmTarget,
    PlacementDecision,
    PlacementReply,
    PolicyStatus,
    ProblemDetails,
    ProxyRow,
    StatusReply,
)
from controlplane.api.problems import ApiProblem
from controlplane.api.runtime import RuntimeView, to_jsonable

CANARY_ACTIONS = ("pause", "resume", "abort")

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDetails, "content": {"application/problem+json": {}}}
    for status in (401, 403, 404, 409, 421, 422)
}


def status_router(runtime: RuntimeView) -> APIRouter:
    reads = APIRouter(
        tags=["status"], dependencies=[Depends(require_scope("read"))], responses=ERRORS
    )

    def jsonable(value: Any) -> Any:
        return camelize(to_jsonable(value))

    @reads.get("/v1/status", response_model=StatusReply)
    async def status() -> Any:
        """The policy source, every connected proxy and every GTM target, in one reply."""
        return {
            "policy": jsonable(runtime.policy_status()),
            "proxies": jsonable(runtime.proxies()),
            "gtm": jsonable(runtime.gtm_health()),
        }

    @reads.get("/v1/policy/status", response_model=PolicyStatus)
    async def policy_status() -> Any:
        return jsonable(runtime.policy_status())

    @reads.get("/v1/proxies", response_model=list[ProxyRow])
    async def proxies() -> Any:
        return jsonable(runtime.proxies())

    @reads.get("/v1/gtm/health", response_model=list[GtmTarget])
    async def gtm_health() -> Any:
        return jsonable(runtime.gtm_health())

    @reads.get("/v1/gtm/explain", response_model=GtmExplanation)
    async def explain(
        name: Annotated[str, Query(max_length=255)], client: Annotated[str, Query(max_length=64)]
    ) -> Any:
        try:
            ipaddress.ip_address(client)
        except ValueError:
            raise ApiProblem(
                422, "invalid-request", f"client: expected an IP address, got {client[:64]!r}"
            ) from None
        result = runtime.explain(name, client)
        if result is None:
            raise ApiProblem(404, "not-found", f"no GlobalService serves {name[:255]!r}")
        return dict(jsonable(result))

    @reads.get("/v1/placement", response_model=PlacementReply)
    async def placement() -> Any:
        """Every loop-driven service's decision and why; the feedback source's state."""
        return dict(jsonable(runtime.placement()))

    @reads.get("/v1/placement/{service}", response_model=PlacementDecision)
    async def placement_of(service: Annotated[str, Path(max_length=253)]) -> Any:
        decision = runtime.placement().get("decisions", {}).get(service)
        if decision is None:
            raise ApiProblem(404, "not-found", f"no placement decision for service {service!r}")
        return dict(jsonable(decision))

    @reads.get("/v1/canaries", response_model=dict[str, CanaryState])
    async def canaries() -> Any:
        """Every canary's status, by name."""
        return dict(jsonable(runtime.canaries()))

    writes = APIRouter(
        tags=["canaries"], dependencies=[Depends(require_scope("write"))], responses=ERRORS
    )

    @writes.post("/v1/canaries/{name}/{action}", response_model=CanaryState)
    async def canary_command(
        name: Annotated[str, Path(max_length=253)], action: Annotated[str, Path(max_length=16)]
    ) -> Any:
        if action not in CANARY_ACTIONS:
            raise ApiProblem(404, "not-found", f"action must be one of {', '.join(CANARY_ACTIONS)}")
        try:
            return dict(jsonable(runtime.canary_command(name, action)))
        except KeyError:
            raise ApiProblem(404, "not-found", f"no running canary {name!r}") from None
        except ValueError as exc:  # CommandError: not in a phase that allows it
            raise ApiProblem(409, "conflict", str(exc)) from None

    router = APIRouter()
    router.include_router(reads)
    router.include_router(writes)
    return router
