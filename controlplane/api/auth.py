"""Who may call the API: bearer tokens with scopes, and the Host allow-list.

Tokens come from a file (``--api-token-file``, env ``UBIQ_API_TOKEN_FILE``; one ``TOKEN
SCOPE[,SCOPE]`` per line, ``#`` comments) or from ``UBIQ_API_TOKEN`` (one token, scopes read
and write). A presented token is compared with every configured one by ``hmac.compare_digest``
(no early exit). ``write`` includes ``read``. With no token configured, reads are open and writes
are refused: nothing changes policy without a token.

``require_scope("write")`` is a FastAPI dependency; apply it to a route or a whole router
(``APIRouter(dependencies=[Depends(require_scope("write"))])``). ``HostGuard`` refuses requests
whose ``Host`` is not an allowed name (421): a page on another site that rebinds its DNS name to
127.0.0.1 cannot read or change anything.

No token ever appears in a log line or an error: errors name the file and line, never the text.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import stat
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from controlplane.errors import UbiqError

log = structlog.get_logger("ubiq.api.auth")

ScopeName = Literal["read", "write"]
SCOPES: tuple[ScopeName, ...] = ("read", "write")
TOKEN_ENV = "UBIQ_API_TOKEN"
TOKEN_FILE_ENV = "UBIQ_API_TOKEN_FILE"
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 4096
MAX_FILE_BYTES = 1 << 20
MAX_TOKENS = 1000
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")
#: endpoints open to anyone, with or without a token or an allowed Host (probes, scrapes)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: probes send the pod IP as Host: these skip the Host check (they tell nothing but ready or not)
HOST_EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})


class TokenError(UbiqError):
    """A token file or variable that cannot be used; names where, never the token."""


@dataclass(frozen=True, slots=True)
class Token:
    secret: bytes = field(repr=False)
    scopes: frozenset[str]
    origin: str  # "FILE:LINE" or "$UBIQ_API_TOKEN": for logs, never the secret


@dataclass(frozen=True, slots=True)
class TokenSet:
    tokens: tuple[Token, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def scopes_of(self, presented: str) -> frozenset[str] | None:
        """The scopes of ``presented``; None when it matches no token. Every configured token
        is compared, each in constant time."""
        given = presented.encode()
        found: frozenset[str] | None = None
        for token in self.tokens:
            if hmac.compare_digest(given, token.secret) and found is None:
                found = token.scopes
        return found


def parse_token(text: str, origin: str, scopes: Iterable[str]) -> Token:
    if not MIN_TOKEN_CHARS <= len(text) <= MAX_TOKEN_CHARS:
        raise TokenError(
            f"{origin}: a token must be {MIN_TOKEN_CHARS}..{MAX_TOKEN_CHARS} characters"
        )
    if not _TOKEN_CHARS.fullmatch(text):
        raise TokenError(f"{origin}: a token may only use letters, digits and ._~+/=-")
    wanted = frozenset(scopes)
    unknown = sorted(wanted - set(SCOPES))
    if unknown or not wanted:
        raise TokenError(
            f"{origin}: expected scopes from {', '.join(SCOPES)}, got {', '.join(unknown) or 'none'}"
        )
    if "write" in wanted:
        wanted |= {"read"}
    return Token(text.encode(), wanted, origin)


def parse_token_file(text: str, name: str) -> TokenSet:
    """``TOKEN SCOPE[,SCOPE]`` per line; blank lines and ``#`` comments are skipped."""
    tokens: list[Token] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()  # a token never contains a hash sign
        if not line:
            continue
        parts = line.split()
        origin = f"{name}:{number}"
        if len(parts) != 2:
            raise TokenError(f"{origin}: expected 'TOKEN SCOPE[,SCOPE]' (scopes: read, write)")
        tokens.append(parse_token(parts[0], origin, (s for s in parts[1].split(",") if s)))
        if len(tokens) > MAX_TOKENS:
            raise TokenError(f"{name}: more than {MAX_TOKENS} tokens")
    if not tokens:
        raise TokenError(f"{name}: no tokens (expected 'TOKEN SCOPE[,SCOPE]' lines)")
    return TokenSet(tuple(tokens))


def load_token_file(path: Path) -> TokenSet:
    try:
        with path.open("rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise TokenError(f"{path}: not a regular file")
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TokenError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise TokenError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("api.tokens.readable", file=str(path), detail="others can read it; chmod 600")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise TokenError(f"{path}: not UTF-8 text") from None
    return parse_token_file(text, str(path))


def load_tokens(file: Path | None, environ: Mapping[str, str] = os.environ) -> TokenSet:
    """The tokens of ``file`` (else ``$UBIQ_API_TOKEN_FILE``) plus ``$UBIQ_API_TOKEN``."""
    tokens: list[Token] = []
    path = file or (Path(environ[TOKEN_FILE_ENV]) if environ.get(TOKEN_FILE_ENV) else None)
    if path is not None:
        tokens += load_token_file(path).tokens
    single = environ.get(TOKEN_ENV, "").strip()
    if single:
        tokens.append(parse_token(single, f"${TOKEN_ENV}", SCOPES))
    return TokenSet(tuple(tokens))


# --- the Host allow-list ------------------------------------------------------------------------


def default_allowed_hosts(bind_host: str) -> frozenset[str]:
    return frozenset({"localhost", "127.0.0.1", "::1", normal_host(bind_host)})


def normal_host(value: str) -> str:
    """A Host header (or name) without port and brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def check_allowed_host(value: str) -> str:
    """An ``--api-allowed-host`` value: a name, an IP address, or ``*`` (any)."""
    host = normal_host(value)
    if host == "*":
        return host
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not re.fullmatch(r"[a-z0-9*]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", host):
        raise UbiqError(f"--api-allowed-host: expected a host name or IP address, got {value!r}")
    return host


class HostGuard:
    """ASGI middleware: 421 for a ``Host`` not in ``allowed`` (``*`` allows any)."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "*" in self.allowed or scope.get("path") in HOST_EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        if normal_host(host) in self.allowed:
            await self.app(scope, receive, send)
            return
        from fastapi.responses import JSONResponse

        from controlplane.api.models import ProblemDetails
        from controlplane.api.problems import MEDIA_TYPE, TYPE_BASE

        body = ProblemDetails(
            type=TYPE_BASE + "misdirected-request",
            title="Misdirected Request",
            status=421,
            detail="this Host is not served here (add it with --api-allowed-host)",
            instance=str(scope.get("path", "")),
        )
        response = JSONResponse(
            body.model_dump(by_alias=True, exclude_none=True), 421, media_type=MEDIA_TYPE
        )
        await response(scope, receive, send)


# --- the dependency -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiSecurity:
    """What the app enforces; kept on ``app.state.security``."""

    tokens: TokenSet = field(default_factory=TokenSet)
    allowed_hosts: frozenset[str] = frozenset({"*"})


_bearer = HTTPBearer(
    auto_error=False, description="a token from --api-token-file or $UBIQ_API_TOKEN"
)


def require_scope(scope: ScopeName) -> Callable[..., Awaitable[None]]:
    """A dependency refusing a request without a token holding ``scope``: 401 for no or an
    unknown token, 403 for a token without the scope, 403 for any write when no token is
    configured. Reads are open while no token is configured."""
    from controlplane.api.problems import ApiProblem

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> None:
        security: ApiSecurity = getattr(request.app.state, "security", ApiSecurity())
        if not security.tokens:
            if scope == "read":
                return
            raise ApiProblem(
                403,
                "forbidden",
                "writes are disabled: no API token is configured"
                " (start serve with --api-token-file or $UBIQ_API_TOKEN)",
            )
        challenge = {"WWW-Authenticate": 'Bearer realm="ubiq"'}
        if credentials is None:
            raise ApiProblem(401, "unauthorized", "a bearer token is required", headers=challenge)
        scopes = security.tokens.scopes_of(credentials.credentials)
        if scopes is None:
            raise ApiProblem(
                401, "unauthorized", "the bearer token is not valid", headers=challenge
            )
        if scope not in scopes:
            raise ApiProblem(403, "forbidden", f"the token lacks the {scope!r} scope")

    return dependency
