"""/v1/policies on the etcd store, against a real etcd: versions are mod revisions, If-Match is
checked by the store's transaction (two racing writers: one wins, one gets 409), a refused
write changes nothing, and an accepted one is served."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.etcd.process import EtcdCluster
from controlplane.policy.etcd_store import EtcdStore
from tests.support.api import copy_example, in_process
from tests.support.etcd import etcd_cluster

PATH = "/v1/policies/RoutePolicy/checkout"


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with etcd_cluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


async def test_etcd_writes(etcd: EtcdCluster, tmp_path: Path) -> None:
    url = etcd.url("/api-test")
    seed = EtcdStore.from_url(url)
    await seed.import_directory(copy_example(tmp_path / "p"))
    await seed.client.aclose()
    async with in_process(tmp_path / "unused", store=url) as api:
        auth = api.auth()
        got = await api.client.get(PATH, headers=auth)
        assert got.status_code == 200, got.text
        item = got.json()
        assert item["source"] == "/api-test/policies/RoutePolicy/checkout"
        version = item["resourceVersion"]
        assert version.isdigit()
        doc = item["document"]

        # invalid: the etcd:KEY:LINE problems, nothing written
        bad = {**doc, "spec": {**doc["spec"], "hosts": []}}
        refused = await api.client.put(PATH, json=bad, headers=auth)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["file"] == "etcd:/api-test/policies/RoutePolicy/checkout"
        assert (await api.client.get(PATH, headers=auth)).json()["resourceVersion"] == version

        # two writers from the same version: exactly one wins
        first = {**doc, "spec": {**doc["spec"], "hosts": ["checkout.mesh.example", "a.example"]}}
        second = {**doc, "spec": {**doc["spec"], "hosts": ["checkout.mesh.example", "b.example"]}}
        replies = await asyncio.gather(
            api.client.put(PATH, json=first, headers={**auth, "If-Match": f'"{version}"'}),
            api.client.put(PATH, json=second, headers={**auth, "If-Match": f'"{version}"'}),
        )
        assert sorted(r.status_code for r in replies) == [200, 409], [r.text for r in replies]
        winner = next(r for r in replies if r.status_code == 200).json()
        assert winner["served"] is True and int(winner["resourceVersion"]) > int(version)
        hosts = api.ubiq.store.model.route_policies["checkout"].spec.hosts
        assert len(hosts) == 2 and hosts[1] in ("a.example", "b.example")
        stored = (await api.client.get(PATH, headers=auth)).json()
        assert stored["resourceVersion"] == winner["resourceVersion"]

        # dry run on etcd: the diff, no write
        dry = await api.client.put(PATH, params={"dryRun": "true"}, json=doc, headers=auth)
        assert dry.status_code == 200 and dry.json()["diff"]["documents"][0]["change"] == "changed"
        assert (await api.client.get(PATH, headers=auth)).json()["resourceVersion"] == stored[
            "resourceVersion"
        ]

        # create, then delete with a stale version (409), then with the right one
        new = {
            **doc,
            "metadata": {"name": "extra"},
            "spec": {**doc["spec"], "hosts": ["extra.example"]},
        }
        created = await api.client.put("/v1/policies/RoutePolicy/extra", json=new, headers=auth)
        assert created.status_code == 201, created.text
        assert "extra" in api.ubiq.store.model.route_policies
        stale = await api.client.delete(
            "/v1/policies/RoutePolicy/extra", headers={**auth, "If-Match": "1"}
        )
        assert stale.status_code == 409
        gone = await api.client.delete(
            "/v1/policies/RoutePolicy/extra",
            headers={**auth, "If-Match": created.json()["resourceVersion"]},
        )
        assert gone.status_code == 200, gone.text
        assert "extra" not in api.ubiq.store.model.route_policies
