"""Tokens, scopes, the Host guard and problem+json, in-process against a real Ubiq: a write
without a valid write token is refused and changes nothing."""

from __future__ import annotations

from pathlib import Path

from controlplane.api.auth import TokenSet
from tests.support.api import READ_TOKEN, WRITE_TOKEN, copy_example, in_process

PATH = "/v1/policies/RoutePolicy/checkout"


def files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


async def test_scopes(tmp_path: Path) -> None:
    async with in_process(copy_example(tmp_path / "p")) as api:
        doc = (await api.client.get(PATH, headers=api.auth(READ_TOKEN))).json()["document"]
        before = files(api.root)
        for headers, status in (
            ({}, 401),
            ({"Authorization": "Bearer not-a-token-at-all-xxxx"}, 401),
            ({"Authorization": f"Basic {WRITE_TOKEN}"}, 401),
            (api.auth(READ_TOKEN), 403),
        ):
            reply = await api.client.put(PATH, json=doc, headers=headers)
            assert reply.status_code == status, (headers, reply.text)
            assert reply.headers["content-type"] == "application/problem+json"
            if status == 401:
                assert reply.headers["www-authenticate"].startswith("Bearer")
            deleted = await api.client.delete(PATH, headers=headers)
            assert deleted.status_code == status
        assert files(api.root) == before
        assert (await api.client.get("/v1/status")).status_code == 401
        assert (await api.client.get("/v1/status", headers=api.auth(READ_TOKEN))).status_code == 200
        assert (
            await api.client.get("/v1/policies", headers=api.auth(WRITE_TOKEN))
        ).status_code == 200
        assert (
            await api.client.post("/v1/canaries/x/pause", headers=api.auth(READ_TOKEN))
        ).status_code == 403
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert (await api.client.get(open_path)).status_code == 200, open_path
        # the write token writes (unchanged document: nothing to do)
        same = await api.client.put(PATH, json=doc, headers=api.auth(WRITE_TOKEN))
        assert same.status_code == 200, same.text


async def test_without_tokens_reads_are_open_and_writes_refused(tmp_path: Path) -> None:
    async with in_process(copy_example(tmp_path / "p"), tokens=TokenSet()) as api:
        doc = (await api.client.get(PATH)).json()["document"]
        before = files(api.root)
        reply = await api.client.put(
            PATH, json=doc, headers={"Authorization": f"Bearer {WRITE_TOKEN}"}
        )
        assert reply.status_code == 403
        assert "no API token is configured" in reply.json()["detail"]
        assert files(api.root) == before


async def test_host_guard_refuses_foreign_hosts(tmp_path: Path) -> None:
    async with in_process(copy_example(tmp_path / "p")) as api:
        evil = {"Host": "rebind.attacker.example", **api.auth(READ_TOKEN)}
        reply = await api.client.get("/v1/status", headers=evil)
        assert reply.status_code == 421
        assert reply.json()["type"].endswith("/misdirected-request")
        assert (
            await api.client.get(
                "/v1/status", headers={"Host": "localhost:8081", **api.auth(READ_TOKEN)}
            )
        ).status_code == 200
        assert (
            await api.client.get("/metrics", headers={"Host": "rebind.attacker.example"})
        ).status_code == 421
        # probes send the pod IP as Host
        assert (
            await api.client.get("/readyz", headers={"Host": "10.1.2.3:8081"})
        ).status_code == 200


async def test_every_error_is_problem_json(tmp_path: Path) -> None:
    async with in_process(copy_example(tmp_path / "p")) as api:
        auth = api.auth(WRITE_TOKEN)
        cases = [
            (await api.client.get("/v1/nope", headers=auth), 404),
            (await api.client.post("/v1/policies", headers=auth), 405),
            (await api.client.get("/v1/policies", params={"limit": 0}, headers=auth), 422),
            (await api.client.get("/v1/policies/Gadget/x", headers=auth), 422),
            (await api.client.get("/v1/policies/Service/nope", headers=auth), 404),
            (
                await api.client.put(
                    PATH, content=b"x", headers={**auth, "Content-Type": "text/plain"}
                ),
                415,
            ),
            (
                await api.client.put(
                    PATH, content=b"{", headers={**auth, "Content-Type": "application/json"}
                ),
                400,
            ),
            (
                await api.client.put(
                    PATH, content=b"a: [", headers={**auth, "Content-Type": "application/yaml"}
                ),
                422,
            ),
            (
                await api.client.put(
                    PATH,
                    content=b"x" * (1 << 21),
                    headers={**auth, "Content-Type": "application/yaml"},
                ),
                413,
            ),
            (
                await api.client.get(
                    "/v1/gtm/explain", params={"name": "x", "client": "nope"}, headers=auth
                ),
                422,
            ),
        ]
        for reply, status in cases:
            assert reply.status_code == status, (reply.request.url, reply.text)
            assert reply.headers["content-type"] == "application/problem+json"
            body = reply.json()
            assert (
                body["status"] == status and body["title"] and body["type"].startswith("https://")
            )
            assert body["instance"] == reply.request.url.path
        limit = cases[2][0].json()
        assert limit["errors"][0]["pointer"] == "query.limit"
        mismatch = await api.client.put(
            PATH, json={"kind": "Service", "metadata": {"name": "other"}}, headers=auth
        )
        assert mismatch.status_code == 422
        assert [e["pointer"] for e in mismatch.json()["errors"]] == ["kind", "metadata.name"]
