"""The API in-process: a real ``Ubiq`` (store watching a copy of an example, xDS and DNS on
loopback port 0) behind its FastAPI app, called through httpx's ASGI transport."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from controlplane.api.app import create_app
from controlplane.api.auth import ApiSecurity, TokenSet, parse_token
from controlplane.api.writers import backend_for
from controlplane.serve import ServeOptions, Ubiq

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"
READ_TOKEN = "read-token-0123456789abcdef"
WRITE_TOKEN = "write-token-0123456789abcdef"


def token_set() -> TokenSet:
    return TokenSet(
        (
            parse_token(READ_TOKEN, "test:1", ["read"]),
            parse_token(WRITE_TOKEN, "test:2", ["write"]),
        )
    )


@dataclass
class InProcess:
    ubiq: Ubiq
    client: httpx.AsyncClient
    root: Path

    def auth(self, token: str = WRITE_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def copy_example(root: Path) -> Path:
    shutil.copytree(EXAMPLE, root)
    # no gateways run here: drop the GTM health checks so nothing probes
    gs = root / "global.yaml"
    gs.write_text("\n".join(x for x in gs.read_text().splitlines() if "healthCheck" not in x))
    return root


@contextlib.asynccontextmanager
async def in_process(
    root: Path,
    *,
    tokens: TokenSet | None = None,
    allowed_hosts: frozenset[str] | None = None,
    store: str | None = None,
) -> AsyncIterator[InProcess]:
    """``store``: an ``etcd://`` URL to serve from instead of ``root``."""
    options = ServeOptions(
        directory=None if store else root,
        store=store,
        xds=("127.0.0.1", 0),
        dns=(("127.0.0.1", 0),),
        api=None,
        debounce_ms=20,
    )
    ubiq = Ubiq(options)
    await ubiq.start()
    try:
        if store is None:
            await ubiq.store.watch_ready.wait()  # type: ignore[attr-defined]
        security = ApiSecurity(
            tokens=token_set() if tokens is None else tokens,
            allowed_hosts=allowed_hosts or frozenset({"127.0.0.1", "localhost"}),
        )
        app = create_app(
            ubiq,
            security=security,
            policies=backend_for(ubiq.store),
            diff_context=ubiq.diff_context,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", timeout=30
        ) as client:
            yield InProcess(ubiq, client, root)
    finally:
        await ubiq.stop()
