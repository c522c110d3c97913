"""RFC 9457 problem details: every error the API returns is ``application/problem+json``.

``ApiProblem`` is raised by handlers; the exception handlers installed by ``install`` turn it,
FastAPI's request validation errors, Starlette's HTTP errors and anything unexpected into the
same shape (``type``, ``title``, ``status``, ``detail``, ``instance``, and ``errors`` for
validation: each with a field path and, for policy problems, the file and line).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from controlplane.api.models import ErrorItem, ProblemDetails
from controlplane.errors import Problem

log = structlog.get_logger("ubiq.api")

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://ubiq.io/problems/"


class ApiProblem(Exception):
    """An error reply: ``kind`` becomes the problem ``type`` (``TYPE_BASE + kind``)."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        errors: Sequence[ErrorItem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail
        self.errors = list(errors)
        self.headers = headers or {}


def policy_errors(problems: Iterable[Problem]) -> list[ErrorItem]:
    """``ubiq validate``'s problems as ``errors`` items (file, line, field path, message)."""
    return [
        ErrorItem(
            pointer=p.field or None,
            file=p.file,
            line=p.line,
            message=p.message,
            location=str(p),
        )
        for p in problems
    ]


def problem_response(
    request: Request,
    status: int,
    kind: str,
    detail: str,
    errors: Sequence[ErrorItem] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ProblemDetails(
        type=TYPE_BASE + kind,
        title=_title(status),
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=list(errors) or None,
    )
    return JSONResponse(
        body.model_dump(by_alias=True, exclude_none=True),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


_KINDS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    411: "length-required",
    412: "precondition-failed",
    413: "content-too-large",
    415: "unsupported-media-type",
    421: "misdirected-request",
    422: "invalid-request",
}


def _field_path(loc: Sequence[Any]) -> str:
    """``("query", "limit")`` -> ``query.limit``; ``("body", "spec", 0)`` -> ``body.spec[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def install(app: FastAPI) -> None:
    """Every error reply of ``app`` becomes problem+json."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.kind, exc.detail, exc.errors, exc.headers or None
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            ErrorItem(pointer=_field_path(e.get("loc", ())), message=str(e.get("msg", "")))
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e.pointer}: {e.message}" for e in errors[:5])
        return problem_response(request, 422, "invalid-request", detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _KINDS.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
        return problem_response(
            request, exc.status_code, kind, detail, headers=dict(exc.headers or {}) or None
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api.request.failed", path=request.url.path, method=request.method)
        return problem_response(
            request, 500, "internal-error", "internal error; the server log has the details"
        )
