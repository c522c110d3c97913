"""``/v1/policies``: list (paginated), get, put (create or replace), delete, each write with
``?dryRun=true`` to see what it would change. Reads need the ``read`` scope, writes ``write``."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

import structlog
import yaml
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from controlplane.api.auth import require_scope
from controlplane.api.dryrun import DiffContext, policy_diff
from controlplane.api.models import ListMeta, PolicyItem, PolicyList, ProblemDetails, WriteResult
from controlplane.api.problems import ApiProblem, policy_errors
from controlplane.api.writers import (
    Conflict,
    NotFound,
    PolicyBackend,
    Precondition,
    StoredDocument,
    sort_key,
)
from controlplane.errors import PolicyError, UbiqError
from controlplane.policy.documents import KINDS
from controlplane.policy.yamlsource import parse_documents

log = structlog.get_logger("ubiq.api")

MAX_BODY_BYTES = 1 << 20
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")

Kind = Literal[
    "Cluster", "Service", "TrafficPolicy", "Placement", "RoutePolicy", "GlobalService", "Canary"
]
assert set(Kind.__args__) == set(KINDS)  # type: ignore[attr-defined]

KindPath = Annotated[Kind, Path(description="the document's kind")]
NamePath = Annotated[str, Path(pattern=NAME_PATTERN, max_length=253, description="metadata.name")]
DryRun = Annotated[
    bool, Query(alias="dryRun", description="check and report what would change; change nothing")
]

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDetails, "content": {"application/problem+json": {}}}
    for status in (400, 401, 403, 404, 409, 413, 415, 421, 422, 503)
}

BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "one policy document, JSON or YAML; kind and metadata.name must match the path",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def encode_continue(kind: str, name: str) -> str:
    raw = json.dumps([kind, name], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        kind, name = json.loads(raw)
        if isinstance(kind, str) and isinstance(name, str):
            return kind, name
    except (binascii.Error, ValueError, TypeError):
        pass
    raise ApiProblem(400, "bad-continue", "continue: not a token this server gave out")


def item(doc: StoredDocument) -> PolicyItem:
    return PolicyItem(
        kind=doc.kind,
        name=doc.name,
        resource_version=doc.version,
        source=doc.source,
        document=doc.data(),
    )


def etag(version: str) -> str:
    return f'"{version}"'


def unquote_etag(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


async def read_body(request: Request) -> bytes:
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > MAX_BODY_BYTES:
        raise ApiProblem(
            413, "content-too-large", f"the body is larger than {MAX_BODY_BYTES} bytes"
        )
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise ApiProblem(
                413, "content-too-large", f"the body is larger than {MAX_BODY_BYTES} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def body_document(body: bytes, content_type: str, kind: str, name: str) -> str:
    """The request body as the YAML text to store; checks it is one ``kind``/``name`` document."""
    media = content_type.split(";", 1)[0].strip().lower()
    source = f"request body ({kind}/{name})"
    if media in JSON_TYPES or media.endswith("+json"):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiProblem(400, "bad-request", f"the body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiProblem(
                422, "invalid-policy", "the body must be one JSON object (a policy document)"
            )
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    elif media in YAML_TYPES:
        try:
            text = body.decode()
            docs = parse_documents(text, source)
        except UnicodeDecodeError:
            raise ApiProblem(400, "bad-request", "the body is not UTF-8 text") from None
        except PolicyError as exc:
            raise ApiProblem(
                422,
                "invalid-policy",
                exc.problems[0].message if exc.problems else "invalid YAML",
                errors=policy_errors(exc.problems),
            ) from None
        if len(docs) != 1 or not isinstance(docs[0].data, dict):
            raise ApiProblem(
                422, "invalid-policy", f"the body must be one YAML document, got {len(docs)}"
            )
        data = docs[0].data
    else:
        raise ApiProblem(415, "unsupported-media-type", "send application/json or application/yaml")
    mismatches = []
    if data.get("kind") != kind:
        mismatches.append(("kind", f"must be {kind!r} (the path's kind)"))
    meta = data.get("metadata")
    if not isinstance(meta, dict) or meta.get("name") != name:
        mismatches.append(("metadata.name", f"must be {name!r} (the path's name)"))
    if mismatches:
        from controlplane.api.models import ErrorItem

        raise ApiProblem(
            422,
            "invalid-policy",
            "; ".join(f"{p}: {m}" for p, m in mismatches),
            errors=[ErrorItem(pointer=p, message=m) for p, m in mismatches],
        )
    return text


def policies_router(
    backend: Callable[[], PolicyBackend | None], context: Callable[[], DiffContext]
) -> APIRouter:
    reads = APIRouter(
        tags=["policies"], dependencies=[Depends(require_scope("read"))], responses=ERRORS
    )
    writes = APIRouter(
        tags=["policies"], dependencies=[Depends(require_scope("write"))], responses=ERRORS
    )

    def store() -> PolicyBackend:
        found = backend()
        if found is None:
            raise ApiProblem(503, "unavailable", "this server's policy source takes no writes")
        return found

    @reads.get("/v1/policies", response_model=PolicyList, response_model_exclude_none=True)
    async def list_policies(
        kind: Annotated[Kind | None, Query(description="only this kind")] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="items per page")
        ] = DEFAULT_LIMIT,
        continue_: Annotated[
            str | None,
            Query(
                alias="continue",
                max_length=2048,
                description="from the last page's metadata.continue",
            ),
        ] = None,
    ) -> PolicyList:
        """Every stored policy document in canonical order (kind, then name), a page at a time."""
        docs = await store().documents()
        if kind is not None:
            docs = [d for d in docs if d.kind == kind]
        if continue_ is not None:
            after = sort_key(*decode_continue(continue_))
            docs = [d for d in docs if sort_key(d.kind, d.name) > after]
        page, rest = docs[:limit], docs[limit:]
        token = encode_continue(page[-1].kind, page[-1].name) if rest else None
        return PolicyList(
            metadata=ListMeta(continue_=token, remaining_item_count=len(rest)),
            items=[item(d) for d in page],
        )

    @reads.get("/v1/policies/{kind}/{name}", response_model=PolicyItem)
    async def get_policy(kind: KindPath, name: NamePath, response: Response) -> PolicyItem:
        """One stored document; its ``resourceVersion`` is also the ``ETag``."""
        for doc in await store().documents():
            if (doc.kind, doc.name) == (kind, name):
                response.headers["ETag"] = etag(doc.version)
                return item(doc)
        raise ApiProblem(404, "not-found", f"no {kind}/{name}")

    async def write(
        kind: str, name: str, text: str | None, pre: Precondition, dry_run: bool, response: Response
    ) -> WriteResult:
        target = store()
        before = target.model
        try:
            outcome = await target.write(kind, name, text, pre, dry_run=dry_run)
        except PolicyError as exc:
            raise ApiProblem(
                422,
                "invalid-policy",
                f"the policy set with this change is not valid ({len(exc.problems)} problem(s));"
                " nothing was changed",
                errors=policy_errors(exc.problems),
            ) from None
        except Conflict as exc:
            raise ApiProblem(409, "conflict", f"{exc}; nothing was changed") from None
        except NotFound as exc:
            raise ApiProblem(404, "not-found", str(exc)) from None
        except UbiqError as exc:
            raise ApiProblem(503, "unavailable", f"{exc}; nothing was changed") from None
        diff = None
        if dry_run:
            diff = await asyncio.to_thread(policy_diff, before, outcome.candidate, context())
        else:
            log.info(
                "api.policy.written",
                kind=kind,
                name=name,
                action=outcome.action,
                served=outcome.served,
            )
        if outcome.version is not None:
            response.headers["ETag"] = etag(outcome.version)
        if outcome.action == "created" and not dry_run:
            response.status_code = 201
        return WriteResult(
            kind=kind,
            name=name,
            dry_run=dry_run,
            action=outcome.action,
            resource_version=outcome.version,
            served=outcome.served,
            diff=diff,
        )

    @writes.put(
        "/v1/policies/{kind}/{name}",
        response_model=WriteResult,
        response_model_exclude_none=True,
        openapi_extra=BODY_DOC,
        responses={201: {"model": WriteResult, "description": "created"}},
    )
    async def put_policy(
        kind: KindPath,
        name: NamePath,
        request: Request,
        response: Response,
        dry_run: DryRun = False,
        if_match: Annotated[str | None, Header(description="the resourceVersion last read")] = None,
        if_none_match: Annotated[str | None, Header(description="'*': create only")] = None,
    ) -> WriteResult:
        """Create or replace one document; the whole set with it must be valid."""
        body = await read_body(request)
        text = body_document(body, request.headers.get("content-type", ""), kind, name)
        pre = Precondition(unquote_etag(if_match), (if_none_match or "").strip() == "*")
        return await write(kind, name, text, pre, dry_run, response)

    @writes.delete(
        "/v1/policies/{kind}/{name}", response_model=WriteResult, response_model_exclude_none=True
    )
    async def delete_policy(
        kind: KindPath,
        name: NamePath,
        response: Response,
        dry_run: DryRun = False,
        if_match: Annotated[str | None, Header(description="the resourceVersion last read")] = None,
    ) -> WriteResult:
        """Delete one document; the set without it must be valid (a Service still routed to
        cannot go)."""
        return await write(
            kind, name, None, Precondition(unquote_etag(if_match)), dry_run, response
        )

    router = APIRouter()
    router.include_router(reads)
    router.include_router(writes)
    return router
