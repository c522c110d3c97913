"""The HTTP API: assembles the routers, the Host guard and problem+json errors.

Handlers are ``async``: they run on Ubiq's own event loop, where the state they read is written,
never in a worker thread. ``/healthz``, ``/readyz`` and ``/metrics`` are open (no token); every
other endpoint needs a ``read`` or ``write`` token once tokens are configured (``auth``).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controlplane.api import problems
from controlplane.api.auth import ApiSecurity, HostGuard
from controlplane.api.dryrun import DiffContext
from controlplane.api.endpoints import endpoints_router
from controlplane.api.policies import policies_router
from controlplane.api.runtime import RuntimeView, to_jsonable
from controlplane.api.status import CANARY_ACTIONS, status_router
from controlplane.api.writers import PolicyBackend

__all__ = ["CANARY_ACTIONS", "RuntimeView", "create_app", "to_jsonable"]


def create_app(
    runtime: RuntimeView,
    *,
    security: ApiSecurity | None = None,
    policies: PolicyBackend | None = None,
    diff_context: Callable[[], DiffContext] = DiffContext,
) -> FastAPI:
    security = security or ApiSecurity()
    app = FastAPI(title="Ubiq", version="v1alpha1", docs_url="/docs", redoc_url=None)
    app.state.security = security
    problems.install(app)
    app.add_middleware(HostGuard, allowed=security.allowed_hosts)

    @app.get("/healthz", response_class=PlainTextResponse, tags=["probes"])
    async def healthz() -> str:
        return "ok\n"

    @app.get("/readyz", response_class=PlainTextResponse, tags=["probes"])
    async def readyz() -> PlainTextResponse:
        """Ready while a policy is loaded and its source is watched (changes are picked up)."""
        policy = runtime.policy_status()
        if policy.get("generation", 0) == 0:
            return PlainTextResponse("not ready: no policy loaded\n", status_code=503)
        if not policy.get("watching", False):
            reason = policy.get("watchError") or "policy source not watched"
            return PlainTextResponse(f"not ready: {reason}\n", status_code=503)
        return PlainTextResponse("ready\n")

    @app.get("/metrics", response_class=PlainTextResponse, tags=["probes"])
    async def metrics() -> PlainTextResponse:
        await runtime.gather_metrics()
        return PlainTextResponse(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(status_router(runtime))
    app.include_router(policies_router(lambda: policies, diff_context))
    app.include_router(endpoints_router(runtime))
    return app
