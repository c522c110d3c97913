"""Reading a running ``ubiq serve`` over its HTTP API (``status``, ``dns explain --api``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controlplane.errors import UbiqError, UnreachableError


def api_url(value: str) -> str:
    """``HOST:PORT`` or ``PORT`` (as ``serve --api`` takes them, host 127.0.0.1), ``[::1]:PORT``
    or a URL -> base URL."""
    value = value.strip().rstrip("/")
    if "://" in value:
        return value
    if not value:
        raise UbiqError("--api: expected HOST:PORT or a URL, got ''")
    if value.isdigit():
        value = f"127.0.0.1:{value}"
    return f"http://{value}"


def get_json(api: str, path: str, params: Mapping[str, str] | None = None) -> Any:
    """GET ``path``; a server that does not answer is UnreachableError (exit 4), an error reply
    is a UbiqError carrying the server's message."""
    return _call("GET", api, path, params)


def post_json(api: str, path: str) -> Any:
    """POST ``path`` (no body), with the same errors as ``get_json``."""
    return _call("POST", api, path, None)


def _call(method: str, api: str, path: str, params: Mapping[str, str] | None) -> Any:
    import httpx

    base = api_url(api)
    try:
        reply = httpx.request(method, f"{base}{path}", params=params, timeout=5)
    except httpx.HTTPError as exc:
        raise UnreachableError(f"cannot reach the Ubiq API at {base}: {exc}") from None
    if reply.status_code >= 400:
        try:
            detail = reply.json().get("detail", reply.text)
        except ValueError:
            detail = reply.text
        raise UbiqError(f"{base}{path}: HTTP {reply.status_code}: {detail}")
    return reply.json()


def send_json(api: str, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
    """``method`` ``path`` with a JSON body; the reply's JSON (None for an empty reply), with the
    same errors as ``get_json``."""
    import httpx

    base = api_url(api)
    try:
        reply = httpx.request(method, f"{base}{path}", json=body, timeout=5)
    except httpx.HTTPError as exc:
        raise UnreachableError(f"cannot reach the Ubiq API at {base}: {exc}") from None
    if reply.status_code >= 400:
        try:
            detail = reply.json().get("detail", reply.text)
        except ValueError:
            detail = reply.text
        raise UbiqError(f"{base}{path}: HTTP {reply.status_code}: {detail}")
    return reply.json() if reply.content else None
