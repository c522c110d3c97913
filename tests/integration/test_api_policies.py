"""/v1/policies in-process against a real Ubiq following a real directory: list, get, put,
delete, dryRun diffs, validation errors, conflicts; every refused write leaves the files as
they were."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.api import READ_TOKEN, copy_example, in_process

CHECKOUT = "RoutePolicy/checkout"


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def checkout_doc(weight_v1: int = 90, weight_v2: int = 10) -> dict[str, object]:
    return {
        "apiVersion": "ubiq.io/v1alpha1",
        "kind": "RoutePolicy",
        "metadata": {"name": "checkout"},
        "spec": {
            "hosts": ["checkout.mesh.example"],
            "http": [
                {
                    "name": "api",
                    "match": [{"path": {"prefix": "/api"}}],
                    "route": [
                        {"service": "checkout", "subset": "v1", "weight": weight_v1},
                        {"service": "checkout", "subset": "v2", "weight": weight_v2},
                    ],
                }
            ],
        },
    }


async def test_list_paginates_with_continue_tokens(tmp_path: Path) -> None:
    async with in_process(copy_example(tmp_path / "p")) as api:
        everything = (
            await api.client.get(
                "/v1/policies", params={"limit": 500}, headers=api.auth(READ_TOKEN)
            )
        ).json()
        assert "continue" not in everything["metadata"]
        names = [(i["kind"], i["name"]) for i in everything["items"]]
        assert len(names) == len(set(names)) > 5
        seen: list[tuple[str, str]] = []
        token = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"limit": 2}
            if token:
                params["continue"] = token
            page = (
                await api.client.get("/v1/policies", params=params, headers=api.auth(READ_TOKEN))
            ).json()
            pages += 1
            seen += [(i["kind"], i["name"]) for i in page["items"]]
            assert page["metadata"]["remainingItemCount"] == len(names) - len(seen)
            token = page["metadata"].get("continue")
            if not token:
                break
        assert seen == names
        assert pages == (len(names) + 1) // 2
        bad = await api.client.get(
            "/v1/policies", params={"continue": "!!nope"}, headers=api.auth(READ_TOKEN)
        )
        assert bad.status_code == 400
        assert bad.headers["content-type"] == "application/problem+json"


async def test_put_validates_the_whole_set_and_refuses_without_changing(tmp_path: Path) -> None:
    async with in_process(copy_example(tmp_path / "p")) as api:
        before = snapshot(api.root)
        served = api.ubiq.store.model.hash
        bad = checkout_doc()
        bad["spec"]["http"][0]["route"][0]["service"] = "nope"  # type: ignore[index]
        reply = await api.client.put(f"/v1/policies/{CHECKOUT}", json=bad, headers=api.auth())
        assert reply.status_code == 422, reply.text
        problem = reply.json()
        assert reply.headers["content-type"] == "application/problem+json"
        assert problem["status"] == 422 and problem["instance"] == f"/v1/policies/{CHECKOUT}"
        located = [e for e in problem["errors"] if "nope" in e["message"]]
        assert located, problem
        assert located[0]["file"].endswith("routes.yaml") and located[0]["line"] >= 1
        assert located[0]["location"].startswith(located[0]["file"] + ":")
        assert snapshot(api.root) == before
        assert api.ubiq.store.model.hash == served


async def test_put_replaces_in_place_and_is_served(tmp_path: Path) -> None:
    async with in_process(copy_example(tmp_path / "p")) as api:
        got = await api.client.get(f"/v1/policies/{CHECKOUT}", headers=api.auth(READ_TOKEN))
        assert got.status_code == 200
        version = got.json()["resourceVersion"]
        assert got.headers["etag"] == f'"{version}"'
        assert got.json()["source"].startswith(str(api.root / "routes.yaml") + ":")
        reply = await api.client.put(
            f"/v1/policies/{CHECKOUT}",
            json=checkout_doc(50, 50),
            headers={**api.auth(), "If-Match": f'"{version}"'},
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["action"] == "replaced" and body["served"] is True and body["dryRun"] is False
        served = api.ubiq.store.model.route_policies["checkout"]
        assert [r.weight for r in served.spec.http[0].route] == [50, 50]
        # the other documents of routes.yaml are still there
        texts = list(yaml.safe_load_all((api.root / "routes.yaml").read_text()))
        assert {d["metadata"]["name"] for d in texts} >= {"checkout", "catalog", "payments"}
        # the old version is now a conflict, and the conflict changes nothing
        before = snapshot(api.root)
        stale = await api.client.put(
            f"/v1/policies/{CHECKOUT}",
            json=checkout_doc(10, 90),
            headers={**api.auth(), "If-Match": version},
        )
        assert stale.status_code == 409
        assert snapshot(api.root) == before


async def test_create_and_delete(tmp_path: Path) -> None:
    async with in_process(copy_example(tmp_path / "p")) as api:
        doc = checkout_doc()
        doc["metadata"] = {"name": "checkout-two"}
        doc["spec"]["hosts"] = ["checkout-two.mesh.example"]  # type: ignore[index]
        created = await api.client.put(
            "/v1/policies/RoutePolicy/checkout-two",
            content=yaml.safe_dump(doc),
            headers={**api.auth(), "Content-Type": "application/yaml", "If-None-Match": "*"},
        )
        assert created.status_code == 201, created.text
        assert (api.root / "RoutePolicy" / "checkout-two.yaml").is_file()
        assert "checkout-two" in api.ubiq.store.model.route_policies
        again = await api.client.put(
            "/v1/policies/RoutePolicy/checkout-two",
            json=doc,
            headers={**api.auth(), "If-None-Match": "*"},
        )
        assert again.status_code == 409
        # a Service that routes use cannot go: the set without it is invalid
        refused = await api.client.delete("/v1/policies/Service/checkout", headers=api.auth())
        assert refused.status_code == 422
        assert "checkout" in api.ubiq.store.model.services
        gone = await api.client.delete("/v1/policies/RoutePolicy/checkout-two", headers=api.auth())
        assert gone.status_code == 200 and gone.json()["action"] == "deleted"
        assert not (api.root / "RoutePolicy" / "checkout-two.yaml").exists()
        assert "checkout-two" not in api.ubiq.store.model.route_policies
        missing = await api.client.delete(
            "/v1/policies/RoutePolicy/checkout-two", headers=api.auth()
        )
        assert missing.status_code == 404


async def test_dry_run_reports_xds_and_dns_changes_and_writes_nothing(tmp_path: Path) -> None:
    async with in_process(copy_example(tmp_path / "p")) as api:
        before = snapshot(api.root)
        reply = await api.client.put(
            f"/v1/policies/{CHECKOUT}",
            params={"dryRun": "true"},
            json=checkout_doc(50, 50),
            headers=api.auth(),
        )
        assert reply.status_code == 200, reply.text
        diff = reply.json()["diff"]
        assert diff["documents"] == [
            {"kind": "RoutePolicy", "name": "checkout", "change": "changed"}
        ]
        rds = [c for c in diff["xds"] if c["type"] == "RDS"]
        assert rds and all(c["changed"] for c in rds)
        assert {c["group"] for c in rds} >= {"eu-west/proxy"}
        assert diff["dns"] == []  # routes do not move DNS answers
        # a GlobalService change moves DNS answers
        gs = (
            await api.client.get(
                "/v1/policies", params={"kind": "GlobalService"}, headers=api.auth()
            )
        ).json()["items"][0]
        document = gs["document"]
        document["spec"]["latency"]["europe"]["eu-west"] = "900ms"  # europe now goes elsewhere
        before_answer = api.ubiq.explain("checkout.gtm.example", "203.0.113.7")
        assert before_answer is not None
        gone = before_answer["answer"]["addresses"][0]
        moved = await api.client.put(
            f"/v1/policies/GlobalService/{gs['name']}",
            params={"dryRun": "true"},
            json=document,
            headers=api.auth(),
        )
        assert moved.status_code == 200, moved.text
        dns = moved.json()["diff"]["dns"]
        assert dns and any(gone in c["before"] and gone not in c["after"] for c in dns)
        assert snapshot(api.root) == before
