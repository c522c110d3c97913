"""EtcdStore against a real etcd on loopback: load, watch, revision-checked writes, import/export."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from controlplane.errors import PolicyError, SourceError
from controlplane.etcd.client import EtcdClient
from controlplane.etcd.process import EtcdCluster
from controlplane.policy.etcd_store import (
    EtcdStore,
    RevisionConflict,
    parse_etcd_url,
    split_documents,
)
from controlplane.policy.loader import load_directory
from controlplane.policy.model import Model
from tests.support.etcd import etcd_cluster
from tests.support.policy import BASE, doc
from tests.support.poll import until

ROUTE = doc(
    "RoutePolicy", "web", "hosts: [web.example]\nhttp:\n- route: [{service: web}]\n  timeout: 1s"
)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with etcd_cluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    root = tmp_path / "policies"
    root.mkdir()
    (root / "base.yaml").write_text("# the clusters and the service\n" + BASE)
    (root / "route.yaml").write_text(ROUTE)
    return root


_prefixes = iter(range(1_000_000))


@pytest.fixture
def url(etcd: EtcdCluster) -> str:
    """A fresh key prefix per test, so tests share one etcd without seeing each other."""
    return etcd.url(f"/t{next(_prefixes)}")


async def imported(url: str, policy_dir: Path) -> EtcdStore:
    store = EtcdStore.from_url(url)
    await store.import_directory(policy_dir)
    store.load()
    return store


@contextlib.asynccontextmanager
async def watching(store: EtcdStore) -> AsyncIterator[asyncio.Queue[Model]]:
    swaps: asyncio.Queue[Model] = asyncio.Queue()
    store.subscribe(swaps.put_nowait)
    task = asyncio.create_task(store.watch())
    try:
        yield swaps
    finally:
        store.stop()
        await asyncio.wait_for(task, 5)


def test_url_parsing() -> None:
    location = parse_etcd_url("etcd://10.0.0.1:2379,[::1]:2379/prod/ubiq/")
    assert location.endpoints == ("http://10.0.0.1:2379", "http://[::1]:2379")
    assert location.prefix == "/prod/ubiq"
    assert parse_etcd_url("etcd://h:1").prefix == "/ubiq"
    for bad in ("http://h:1/x", "etcd://h/x", "etcd://h:port/x"):
        with pytest.raises(Exception, match="expected"):
            parse_etcd_url(bad)


def test_split_keeps_each_documents_text() -> None:
    docs = split_documents("# head\n" + BASE + "---\n" + ROUTE, "f.yaml")
    assert [(d.kind, d.name) for d in docs] == [
        ("Cluster", "eu-west"),
        ("Cluster", "us-west"),
        ("Service", "web"),
        ("RoutePolicy", "web"),
    ]
    assert docs[3].text == ROUTE


async def test_import_load_and_export_round_trip(
    url: str, policy_dir: Path, tmp_path: Path
) -> None:
    store = await imported(url, policy_dir)
    assert store.model.hash == load_directory(policy_dir).hash
    assert store.status.ok and store.status.generation == 1
    client = EtcdClient(store.location.endpoints)
    keys = [kv.key for kv in (await client.range(store.policies, prefix=True)).kvs]
    prefix = store.location.prefix
    assert keys == [
        f"{prefix}/policies/Cluster/eu-west",
        f"{prefix}/policies/Cluster/us-west",
        f"{prefix}/policies/RoutePolicy/web",
        f"{prefix}/policies/Service/web",
    ]
    out = tmp_path / "exported"
    assert await store.export_directory(out) == 4
    assert (out / "RoutePolicy" / "web.yaml").read_text() == ROUTE
    assert load_directory(out).hash == store.model.hash
    with pytest.raises(Exception, match="not empty"):
        await store.export_directory(out)
    await client.aclose()


async def test_empty_prefix_is_a_clear_error(url: str) -> None:
    with pytest.raises(SourceError, match=r"no policy documents under .*ubiq store import"):
        EtcdStore.from_url(url).load()


async def test_problems_name_the_key_and_line(url: str, policy_dir: Path) -> None:
    store = await imported(url, policy_dir)
    client = EtcdClient(store.location.endpoints)
    await client.put(store.key("RoutePolicy", "web"), ROUTE.replace("service: web", "service: x"))
    with pytest.raises(PolicyError) as info:
        EtcdStore.from_url(url).load()
    problem = info.value.problems[0]
    assert problem.file == f"etcd:{store.key('RoutePolicy', 'web')}"
    assert problem.line == 7 and "unknown service 'x'" in problem.message
    # a YAML-level fault is located the same way
    await client.put(store.key("RoutePolicy", "web"), ROUTE.replace("hosts: [", "hosts: [[", 1))
    with pytest.raises(PolicyError) as info:
        EtcdStore.from_url(url).load()
    (problem,) = info.value.problems
    assert problem.file == f"etcd:{store.key('RoutePolicy', 'web')}"
    assert problem.line is not None and "invalid YAML" in problem.message
    await client.aclose()


async def test_watch_swaps_valid_changes_and_keeps_the_last_good_model(
    url: str, policy_dir: Path
) -> None:
    store = await imported(url, policy_dir)
    client = EtcdClient(store.location.endpoints)
    async with watching(store) as swaps:
        good = store.model
        # an invalid document written behind Ubiq's back: rejected, the model stays
        await client.put(store.key("RoutePolicy", "web"), ROUTE.replace("1s", "soon"))
        await until(lambda: store.status.rejected > 0, 5, "the invalid document rejected")
        assert store.model is good and not store.status.ok
        assert f"etcd:{store.key('RoutePolicy', 'web')}:" in str(store.status.problems[0])
        # a valid one swaps
        await client.put(store.key("RoutePolicy", "web"), ROUTE.replace("1s", "3s"))
        model = await asyncio.wait_for(swaps.get(), 5)
        assert model.route_policies["web"].spec.http[0].timeout == 3000
        assert store.status.ok and store.status.generation == 2 and store.status.rejected == 1
    await client.aclose()


async def test_put_document_checks_the_revision_and_the_set(url: str, policy_dir: Path) -> None:
    store = await imported(url, policy_dir)
    revision = await store.revision_of("RoutePolicy", "web")
    assert revision > 0
    new = await store.put_document(
        "RoutePolicy", "web", ROUTE.replace("1s", "2s"), expected_revision=revision
    )
    assert new > revision and await store.revision_of("RoutePolicy", "web") == new
    with pytest.raises(RevisionConflict, match=f"expected revision {revision}"):
        await store.put_document("RoutePolicy", "web", ROUTE, expected_revision=revision)
    # a document that breaks the set is refused and nothing is written
    with pytest.raises(PolicyError, match="unknown service 'nope'"):
        await store.put_document(
            "RoutePolicy", "web", ROUTE.replace("service: web", "service: nope"), new
        )
    with pytest.raises(PolicyError, match="expected one RoutePolicy/other document"):
        await store.put_document("RoutePolicy", "other", ROUTE, 0)
    # creating needs expected revision 0; deleting a service that a route uses is refused
    other = ROUTE.replace("name: web", "name: other").replace("web.example", "o.example")
    assert await store.put_document("RoutePolicy", "other", other, 0) > new
    with pytest.raises(RevisionConflict, match="expected revision 0"):
        await store.put_document("RoutePolicy", "other", other, 0)
    with pytest.raises(PolicyError, match="unknown service 'web'"):
        await store.delete_document("Service", "web", await store.revision_of("Service", "web"))
    other_revision = await store.revision_of("RoutePolicy", "other")
    await store.delete_document("RoutePolicy", "other", other_revision)
    assert await store.revision_of("RoutePolicy", "other") == 0
    await store.client.aclose()


async def test_two_racing_writers_exactly_one_wins(url: str, policy_dir: Path) -> None:
    await imported(url, policy_dir)
    writers = [EtcdStore.from_url(url) for _ in range(2)]
    revision = await writers[0].revision_of("RoutePolicy", "web")
    for _ in range(5):  # several rounds, each from the revision both writers read
        results = await asyncio.gather(
            *(
                w.put_document("RoutePolicy", "web", ROUTE.replace("1s", f"{i + 2}s"), revision)
                for i, w in enumerate(writers)
            ),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, int)]
        lost = [r for r in results if isinstance(r, RevisionConflict)]
        assert len(won) == 1 and len(lost) == 1, results
        revision = won[0]
        assert await writers[1].revision_of("RoutePolicy", "web") == revision
    for w in writers:
        await w.client.aclose()
