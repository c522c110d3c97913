"""The HTTP API: status of the policy source, the proxies, the GTM; explanations; metrics.

The app reads a ``RuntimeView`` (a narrow Protocol the running process implements) and never
changes anything yet: policy CRUD arrives with the shared store. Handlers are ``async``: they run
on Ubiq's own event loop, where the state they read is written, never in a worker thread.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any, Protocol

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

CANARY_ACTIONS = ("pause", "resume", "abort")


class RuntimeView(Protocol):
    registry: CollectorRegistry

    def policy_status(self) -> Mapping[str, Any]: ...

    def proxies(self) -> list[Mapping[str, Any]]: ...

    def gtm_health(self) -> list[Mapping[str, Any]]: ...

    def explain(self, name: str, client: str) -> Mapping[str, Any] | None: ...

    def placement(self) -> Mapping[str, Any]: ...

    def canaries(self) -> Mapping[str, Any]: ...

    def canary_command(self, name: str, action: str) -> Mapping[str, Any]: ...

    async def gather_metrics(self) -> None: ...


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def create_app(runtime: RuntimeView) -> FastAPI:
    app = FastAPI(title="Ubiq", version="v1alpha1", docs_url="/docs", redoc_url=None)

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok\n"

    @app.get("/readyz", response_class=PlainTextResponse)
    async def readyz() -> PlainTextResponse:
        """Ready while a policy is loaded and its source is watched (changes are picked up)."""
        policy = runtime.policy_status()
        if policy.get("generation", 0) == 0:
            return PlainTextResponse("not ready: no policy loaded\n", status_code=503)
        if not policy.get("watching", False):
            reason = policy.get("watchError") or "policy source not watched"
            return PlainTextResponse(f"not ready: {reason}\n", status_code=503)
        return PlainTextResponse("ready\n")

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        return {
            "policy": to_jsonable(runtime.policy_status()),
            "proxies": to_jsonable(runtime.proxies()),
            "gtm": to_jsonable(runtime.gtm_health()),
        }

    @app.get("/v1/policy/status")
    async def policy_status() -> Any:
        return to_jsonable(runtime.policy_status())

    @app.get("/v1/proxies")
    async def proxies() -> Any:
        return to_jsonable(runtime.proxies())

    @app.get("/v1/gtm/health")
    async def gtm_health() -> Any:
        return to_jsonable(runtime.gtm_health())

    @app.get("/v1/gtm/explain")
    async def explain(name: str = Query(...), client: str = Query(...)) -> Any:
        try:
            ipaddress.ip_address(client)
        except ValueError:
            raise HTTPException(422, f"client: expected an IP address, got {client!r}") from None
        result = runtime.explain(name, client)
        if result is None:
            raise HTTPException(404, f"no GlobalService serves {name!r}")
        return to_jsonable(result)

    @app.get("/v1/placement")
    async def placement() -> Any:
        """Every loop-driven service's decision and why; the feedback source's state."""
        return to_jsonable(runtime.placement())

    @app.get("/v1/placement/{service}")
    async def placement_of(service: str) -> Any:
        decision = runtime.placement().get("decisions", {}).get(service)
        if decision is None:
            raise HTTPException(404, f"no placement decision for service {service!r}")
        return to_jsonable(decision)

    @app.get("/v1/canaries")
    async def canaries() -> Any:
        return to_jsonable(runtime.canaries())

    @app.post("/v1/canaries/{name}/{action}")
    async def canary_command(name: str, action: str) -> Any:
        if action not in CANARY_ACTIONS:
            raise HTTPException(404, f"action must be one of {', '.join(CANARY_ACTIONS)}")
        try:
            return to_jsonable(runtime.canary_command(name, action))
        except KeyError:
            raise HTTPException(404, f"no running canary {name!r}") from None
        except ValueError as exc:  # CommandError: not in a phase that allows it
            raise HTTPException(409, str(exc)) from None

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        await runtime.gather_metrics()
        return PlainTextResponse(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    return app
