"""Property-based tests of the API against its own OpenAPI description (schemathesis): every
operation, with generated paths, queries, headers and bodies, sent with a write token to the
app of a real Ubiq (a copy of the three-region example, watched) gets no 5xx, and every answer
conforms to the schema: status codes, content types, bodies."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from controlplane.api.app import create_app
from controlplane.api.auth import ApiSecurity
from controlplane.api.writers import SERVED_WAIT_S, backend_for
from controlplane.serve import ServeOptions, Ubiq
from tests.support.api import WRITE_TOKEN, copy_example, token_set
from tests.support.loop import LoopThread, loop_thread

MAX_EXAMPLES = 25  # per operation: about 15 operations, well under a minute in all
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoopThread, Any, Path]]:
    root = copy_example(tmp_path_factory.mktemp("schemathesis") / "policies")
    with loop_thread("api-schemathesis") as lt:
        options = ServeOptions(
            directory=root, xds=("127.0.0.1", 0), dns=(("127.0.0.1", 0),), api=None, debounce_ms=20
        )
        ubiq = lt.run(_start(options), 30)
        app = create_app(
            ubiq,
            security=ApiSecurity(tokens=token_set(), allowed_hosts=frozenset({"127.0.0.1"})),
            policies=backend_for(ubiq.store),
            diff_context=ubiq.diff_context,
        )
        try:
            yield lt, app, root
        finally:
            lt.run(ubiq.stop(), 30)


async def _start(options: ServeOptions) -> Ubiq:
    ubiq = Ubiq(options)
    await ubiq.start()
    await asyncio.wait_for(ubiq.store.watch_ready.wait(), 10)  # type: ignore[attr-defined]
    return ubiq


def operations(app: Any) -> list[Any]:
    schema = schemathesis.openapi.from_dict(app.openapi())
    return [result.ok() for result in schema.get_all_operations()]


def test_no_server_errors_and_answers_match_the_schema(
    served: tuple[LoopThread, Any, Path],
) -> None:
    lt, app, root = served
    ops = operations(app)
    assert {"GET /v1/policies", "PUT /v1/policies/{kind}/{name}"} <= {
        f"{op.method.upper()} {op.path}" for op in ops
    }
    transport = httpx.ASGITransport(app=app)

    seen: Counter[tuple[str, int]] = Counter()

    async def send(kwargs: dict[str, Any]) -> httpx.Response:
        cookies = kwargs.pop("cookies", None)
        if isinstance(kwargs.get("data"), str | bytes):
            kwargs["content"] = kwargs.pop("data")
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", cookies=cookies
        ) as client:
            return await client.request(**kwargs)

    for op in ops:

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=op.as_strategy())
        def check(case: Any) -> None:
            kwargs = case.as_transport_kwargs(
                base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {WRITE_TOKEN}"}
            )
            kwargs.pop("verify", None)
            kwargs.pop("allow_redirects", None)
            kwargs.pop("follow_redirects", None)
            response = lt.run(send(kwargs), SERVED_WAIT_S + 20)
            seen[(f"{case.method} {case.path}", response.status_code)] += 1
            case.validate_response(response, checks=CHECKS)

        with contextlib.suppress(AttributeError):
            check.__name__ = f"check {op.method} {op.path}"
        check()
    # the generated requests got past validation into the handlers, writes included
    statuses = {status for (_, status) in seen}
    assert {200, 404, 422} <= statuses, seen
    assert any(op == "PUT /v1/policies/{kind}/{name}" and s == 422 for op, s in seen), seen
    assert any(root.rglob("*.yaml"))
