"""Three `ubiq serve --store etcd://...` replicas on a 3-member etcd cluster, one real Envoy whose
bootstrap lists every replica: a policy written to etcd reaches the Envoy; the replicas agree on
model hash, xDS versions and DNS answers; losing an etcd member changes nothing visible; losing
the replica the Envoy is attached to costs zero failed requests while it moves to another."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from controlplane.demo.envoys import start_envoy
from controlplane.etcd.process import EtcdCluster
from controlplane.policy.etcd_store import EtcdStore
from tests.support.dns import dig
from tests.support.etcd import etcd_cluster
from tests.support.poll import wait_until
from tests.support.procs import free_port, require_binary, running, wait_for_port
from tests.support.replicas import CDS, Replica, demo_backends, xds_versions

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"
CANARY = {"host": "checkout.mesh.example", "x-canary": "true"}


@pytest.fixture
def backend_port() -> Iterator[int]:
    """eu-west's checkout v1/v2 backends on a port of their own (the example's fixed 18001 may be
    taken by another test run on this machine); the test rewrites the example to match."""
    with demo_backends(
        free_port("127.0.2.1"),
        ("checkout", "eu-west", "v1", "127.0.2.1"),
        ("checkout", "eu-west", "v2", "127.0.2.2"),
    ) as port:
        yield port


def version(client: httpx.Client) -> str:
    reply = client.get("/api/x", headers=CANARY)
    return str(reply.headers.get("x-ubiq-version", str(reply.status_code)))


class RequestLoop(threading.Thread):
    """Requests through the Envoy one after another until stopped (bounded in count)."""

    def __init__(self, base: str, limit: int = 5000) -> None:
        super().__init__(daemon=True)
        self.base, self.limit = base, limit
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=5) as client:
            for _ in range(self.limit):
                if self.stop.is_set():
                    return
                try:
                    reply = client.get("/api/x", headers=CANARY)
                    if reply.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"HTTP {reply.status_code}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.stop.wait(0.005)


def test_replicas_share_etcd_and_envoy_fails_over(tmp_path: Path, backend_port: int) -> None:
    require_binary("envoy")
    root = tmp_path / "policies"
    shutil.copytree(EXAMPLE, root)
    # no gateways run here: without health checks the GTM steers by the latency table alone
    gs = root / "global.yaml"
    gs.write_text("\n".join(x for x in gs.read_text().splitlines() if "healthCheck" not in x))
    services = root / "services.yaml"
    text = services.read_text()
    for address in ("127.0.2.1", "127.0.2.2"):
        old = f"address: {address}, port: 18001"
        assert old in text
        text = text.replace(old, f"address: {address}, port: {backend_port}")
    services.write_text(text)
    with ExitStack() as stack:
        etcd: EtcdCluster = stack.enter_context(etcd_cluster(tmp_path / "etcd", 3))
        url = etcd.url("/ubiq")
        store = EtcdStore.from_url(url)
        asyncio.run(store.import_directory(root))

        listener = free_port()
        replicas = [Replica(f"r{i}", url, listener, tmp_path / f"r{i}.log") for i in range(3)]
        procs = {r.name: stack.enter_context(running(r.argv(), log=r.log)) for r in replicas}
        for r in replicas:
            wait_for_port("127.0.0.1", r.api_port, 30)
        envoy = start_envoy(
            tmp_path,
            cluster="eu-west",
            region="eu-west",
            zone="eu-west-1a",
            xds_port=replicas[0].xds,
            more_xds_ports=[r.xds for r in replicas[1:]],
            node_id="envoy-eu",
        )
        stack.callback(envoy.stop)

        def attached() -> list[Replica]:
            alive = [r for r in replicas if procs[r.name].poll() is None]
            return [r for r in alive if r.proxy_versions("envoy-eu") is not None]

        client = stack.enter_context(
            httpx.Client(base_url=f"http://127.0.0.1:{listener}", timeout=5)
        )
        wait_until(lambda: version(client) == "v2", 30, "Envoy routing the header canary to v2")

        # a policy written to etcd reaches the Envoy, whichever replica it is attached to
        text = (root / "routes.yaml").read_text()
        checkout = text.split("\n---\n")[0]
        revision = asyncio.run(store.revision_of("RoutePolicy", "checkout"))
        moved = checkout.replace(
            "route: [{service: checkout, subset: v2}]", "route: [{service: checkout, subset: v1}]"
        )
        assert moved != checkout
        asyncio.run(store.put_document("RoutePolicy", "checkout", moved, revision))
        wait_until(lambda: version(client) == "v1", 15, "the new route served by Envoy")

        # every replica holds the same model and serves the same versions and DNS answers
        wait_until(lambda: len({r.model_hash() for r in replicas}) == 1, 10, "same model hash")
        versions = {xds_versions(r.xds, "eu-west") for r in replicas}
        assert len(versions) == 1, versions
        (home,) = attached()
        acked = home.proxy_versions("envoy-eu")
        assert acked is not None and acked[CDS] == versions.pop()[0]
        answers = {
            tuple(
                dig(
                    "127.0.0.1", r.dns, "checkout.gtm.example", "A", "+subnet=203.0.113.0/24"
                ).answer
            )
            for r in replicas
        }
        assert len(answers) == 1 and answers.pop(), "replicas gave different DNS answers"

        # killing an etcd member changes nothing visible: the next change still reaches everyone
        etcd.members[0].kill()
        revision = asyncio.run(store.revision_of("RoutePolicy", "checkout"))
        asyncio.run(store.put_document("RoutePolicy", "checkout", checkout, revision))
        wait_until(lambda: version(client) == "v2", 20, "change after losing an etcd member")
        wait_until(lambda: len({r.model_hash() for r in replicas}) == 1, 10, "same model hash")
        assert all(r.status()["policy"]["ok"] for r in replicas)

        # killing the replica the Envoy is attached to: it moves to another, no request fails
        (home,) = attached()
        before = home.proxy_versions("envoy-eu")
        loop = RequestLoop(f"http://127.0.0.1:{listener}")
        loop.start()
        wait_until(lambda: loop.ok >= 20, 10, "requests flowing")
        procs[home.name].kill()
        procs[home.name].wait(5)
        wait_until(lambda: len(attached()) == 1, 30, "Envoy attached to another replica")
        (new_home,) = attached()
        served_before = loop.ok
        wait_until(lambda: loop.ok >= served_before + 50, 20, "requests after the move")
        loop.stop.set()
        loop.join(10)
        assert loop.failures == [], loop.failures[:5]
        assert new_home is not home
        # the new replica had nothing new to send: Envoy holds the same versions
        wait_until(lambda: new_home.proxy_versions("envoy-eu") == before, 10, "same versions")
