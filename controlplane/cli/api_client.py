"""Talking to a running ``ubiq serve`` over its HTTP API (``status``, ``policy``, ``canary``, …).

The token comes from ``--token-file`` (the first token in the file: a bare token, or the
server's ``TOKEN SCOPE[,SCOPE]`` format), else ``$UBIQ_API_TOKEN``, else the first token of
``$UBIQ_API_TOKEN_FILE``. It is sent as ``Authorization: Bearer`` and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane.errors import UbiqError, UnreachableError

TIMEOUT_S = 15.0  # a write waits until the server serves it (up to 10 s)


@dataclass(frozen=True, slots=True)
class ApiTarget:
    url: str
    token: str | None = field(default=None, repr=False)
    ca: str | None = None  # a CA bundle to verify an https API with (default: the system's)


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


def read_token_file(path: Path, flag: str) -> str:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UbiqError(
            f"{flag}: {path}: cannot read: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line.split()[0]
    raise UbiqError(f"{flag}: {path}: no token in it")


def token_from(args: argparse.Namespace) -> str | None:
    token_file = getattr(args, "token_file", None)
    if token_file is not None:
        return read_token_file(Path(token_file), "--token-file")
    if os.environ.get("UBIQ_API_TOKEN", "").strip():
        return os.environ["UBIQ_API_TOKEN"].strip()
    if os.environ.get("UBIQ_API_TOKEN_FILE"):
        return read_token_file(Path(os.environ["UBIQ_API_TOKEN_FILE"]), "$UBIQ_API_TOKEN_FILE")
    return None


def target(args: argparse.Namespace) -> ApiTarget:
    return ApiTarget(api_url(args.api), token_from(args), getattr(args, "ca_cert", None))


def _as_target(api: str | ApiTarget) -> ApiTarget:
    return api if isinstance(api, ApiTarget) else ApiTarget(api_url(api))


def get_json(api: str | ApiTarget, path: str, params: Mapping[str, str] | None = None) -> Any:
    """GET ``path``; a server that does not answer is UnreachableError (exit 4), an error reply
    is a UbiqError carrying the server's message."""
    return call("GET", api, path, params=params)


def post_json(api: str | ApiTarget, path: str) -> Any:
    """POST ``path`` (no body), with the same errors as ``get_json``."""
    return call("POST", api, path)


def call(
    method: str,
    api: str | ApiTarget,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    import httpx

    t = _as_target(api)
    sent = dict(headers or {})
    if t.token:
        sent["Authorization"] = f"Bearer {t.token}"
    try:
        reply = httpx.request(
            method,
            f"{t.url}{path}",
            params=params,
            content=content,
            headers=sent,
            timeout=TIMEOUT_S,
            verify=_verify(t.ca),
        )
    except httpx.HTTPError as exc:
        raise UnreachableError(f"cannot reach the Ubiq API at {t.url}: {exc}") from None
    if reply.status_code >= 400:
        raise ApiReplyError(f"{t.url}{path}", reply.status_code, _problem(reply))
    return reply.json() if reply.content else None


def _verify(ca: str | None) -> ssl.SSLContext | bool:
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise UbiqError(
            f"--ca-cert: {ca}: cannot use: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def _problem(reply: Any) -> dict[str, Any]:
    try:
        data = reply.json()
    except ValueError:
        return {"detail": reply.text[:500]}
    return data if isinstance(data, dict) else {"detail": str(data)[:500]}


class ApiReplyError(UbiqError):
    """An error reply; ``problem`` is its problem+json body (``errors`` lists every problem)."""

    def __init__(self, where: str, status: int, problem: dict[str, Any]) -> None:
        self.status, self.problem = status, problem
        hint = " (send one with --token-file FILE or $UBIQ_API_TOKEN)" if status == 401 else ""
        super().__init__(f"{where}: HTTP {status}: {problem.get('detail', '')}{hint}")


def send_json(
    api: str | ApiTarget, method: str, path: str, body: Mapping[str, Any] | None = None
) -> Any:
    """``method`` ``path`` with a JSON body; the reply's JSON (None for an empty reply), with the
    same errors as ``get_json``."""
    content = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    return call(method, api, path, content=content, headers=headers)
