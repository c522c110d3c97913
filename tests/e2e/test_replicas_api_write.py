"""A policy written through one replica's API reaches the Envoys and the DNS of the others.

A 3-member etcd cluster and three `ubiq serve --store etcd://...` replicas. Two real Envoys, each
attached to one replica only (its bootstrap lists that one): Envoy A to r1, Envoy B to r2. A new
Service, the RoutePolicy that routes a new host to it and a GlobalService for it are written with
``PUT /v1/policies/...`` and the write token through r0's API. Then a request through Envoy A and
one through Envoy B for the new host reach the new backend (new route, new cluster, its EDS), and
r1's and r2's DNS servers answer the new name with the new backend's address.

The two Envoys run on one host, so r1 and r2 are given different ``--listener-port``s (on real
hosts every gateway binds the same port); nothing else differs between the replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from controlplane.demo.envoys import start_envoy
from controlplane.policy.etcd_store import EtcdStore
from tests.support.dns import dig
from tests.support.etcd import etcd_cluster
from tests.support.gtm_helpers import clusters
from tests.support.poll import wait_until
from tests.support.procs import free_port, require_binary, running, wait_for_port
from tests.support.replicas import API_TOKEN, AUTH, Replica, demo_backends

pytestmark = pytest.mark.integration

OLD, NEW = "127.0.5.1", "127.0.5.2"

POLICY = """\
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: web}}
spec:
  ports: [{{port: {port}}}]
  endpoints: [{{cluster: eu-west, address: {old}}}]
---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {{name: web}}
spec:
  hosts: [web.mesh.example]
  http: [{{route: [{{service: web}}]}}]
---
apiVersion: ubiq.io/v1alpha1
kind: GlobalService
metadata: {{name: web}}
spec:
  name: web.gtm.example
  zone: gtm.example
  service: web
  strategy: weighted
  ttl: 5s
  targets: [{{cluster: eu-west, address: {old}, port: {port}}}]
"""

# written through r0's API, in this order (each must be valid with the ones before it)
WRITES = (
    (
        "Service",
        "shop",
        """\
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: shop}}
spec:
  ports: [{{port: {port}}}]
  endpoints: [{{cluster: eu-west, address: {new}}}]
""",
    ),
    (
        "RoutePolicy",
        "shop",
        """\
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {{name: shop}}
spec:
  hosts: [shop.mesh.example]
  http: [{{route: [{{service: shop}}]}}]
""",
    ),
    (
        "GlobalService",
        "shop",
        """\
apiVersion: ubiq.io/v1alpha1
kind: GlobalService
metadata: {{name: shop}}
spec:
  name: shop.gtm.example
  zone: gtm.example
  service: shop
  strategy: weighted
  ttl: 5s
  targets: [{{cluster: eu-west, address: {new}, port: {port}}}]
""",
    ),
)


@pytest.fixture(autouse=True)
def _api_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every replica holds the write token (from the environment)."""
    monkeypatch.setenv("UBIQ_API_TOKEN", API_TOKEN)


@pytest.fixture
def backend_port() -> Iterator[int]:
    """The old service's backend and the new one's, on one free port at two addresses."""
    with demo_backends(
        free_port(OLD), ("web", "eu-west", "v1", OLD), ("shop", "eu-west", "v1", NEW)
    ) as port:
        yield port


def served_by(listener: int, host: str) -> str:
    """Which service's backend answered a request for ``host`` through the Envoy on ``listener``
    (the HTTP status when none did)."""
    try:
        reply = httpx.get(f"http://127.0.0.1:{listener}/", headers={"host": host}, timeout=5)
    except httpx.HTTPError as exc:
        return repr(exc)
    return reply.headers.get("x-ubiq-service", f"HTTP {reply.status_code}")


def a_records(replica: Replica, name: str) -> list[str]:
    return dig("127.0.0.1", replica.dns, name, "A").rdata("A")


def test_a_write_through_one_replica_reaches_envoys_and_dns_of_the_others(
    tmp_path: Path, backend_port: int
) -> None:
    require_binary("envoy")
    root = tmp_path / "policies"
    root.mkdir()
    (root / "web.yaml").write_text(clusters("eu-west") + POLICY.format(port=backend_port, old=OLD))
    with ExitStack() as stack:
        etcd = stack.enter_context(etcd_cluster(tmp_path / "etcd", 3))
        url = etcd.url("/ubiq")
        asyncio.run(EtcdStore.from_url(url).import_directory(root))

        replicas = [Replica(f"r{i}", url, free_port(), tmp_path / f"r{i}.log") for i in range(3)]
        writer, *others = replicas
        for r in replicas:
            stack.enter_context(running(r.argv(), log=r.log))
        for r in replicas:
            wait_for_port("127.0.0.1", r.api_port, 30)
        envoys = {}
        for name, r in zip(("envoy-a", "envoy-b"), others, strict=True):
            envoy = start_envoy(
                tmp_path,
                cluster="eu-west",
                region="eu-west",
                zone="eu-west-1a",
                xds_port=r.xds,
                node_id=name,
            )
            stack.callback(envoy.stop)
            envoys[name] = r
        for name, r in envoys.items():
            wait_until(
                lambda r=r: served_by(r.listener, "web.mesh.example") == "web",
                30,
                f"{name} (attached to {r.name}) routing web.mesh.example",
            )
            # attached to its own replica only, not to the one written through
            assert r.proxy_versions(name) is not None
            assert writer.proxy_versions(name) is None
        for r in others:
            assert a_records(r, "web.gtm.example") == [OLD]
            assert a_records(r, "shop.gtm.example") == []
        assert served_by(others[0].listener, "shop.mesh.example") == "HTTP 404"

        for kind, name, template in WRITES:
            reply = httpx.put(
                f"{writer.api}/v1/policies/{kind}/{name}",
                content=template.format(port=backend_port, new=NEW),
                headers={**AUTH, "content-type": "application/yaml"},
                timeout=30,
            )
            assert reply.status_code == 201, reply.text
            result = reply.json()
            assert result["action"] == "created" and result["served"] is True, result

        for name, r in envoys.items():
            wait_until(
                lambda r=r: served_by(r.listener, "shop.mesh.example") == "shop",
                20,
                f"{name} (attached to {r.name}) routing the new host to the new backend",
            )
            assert served_by(r.listener, "web.mesh.example") == "web"
        for r in others:
            wait_until(
                lambda r=r: a_records(r, "shop.gtm.example") == [NEW],
                20,
                f"{r.name}'s DNS answering shop.gtm.example",
            )
            assert a_records(r, "web.gtm.example") == [OLD]
        hashes = {r.model_hash() for r in replicas}
        assert len(hashes) == 1, hashes
