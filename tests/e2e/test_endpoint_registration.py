"""Endpoint registration end to end: a VM registers one endpoint of a ``discovery: api`` Service
through the API, a real Envoy routes to it (EDS) and the GTM answers it (DNS); while heartbeats
come it stays; when they stop it leaves both within its TTL. Once with one process on a policy
directory (in-memory registry), once with two replicas on etcd (leases): registered through one
replica, heartbeats through the other, and both serve it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from controlplane.demo.envoys import EnvoyProcess, start_envoy
from controlplane.policy.etcd_store import EtcdStore
from tests.support.cli import ubiq
from tests.support.etcd import etcd_cluster
from tests.support.gtm_helpers import clusters
from tests.support.poll import wait_until
from tests.support.procs import free_port, require_binary, running, wait_for_port
from tests.support.replicas import API_TOKEN, AUTH, Replica, demo_backends
from tests.support.ubiq_serve import query, serving

pytestmark = pytest.mark.integration

STATIC, VM = "127.0.3.1", "127.0.3.2"
NAME = "edge.gtm.example"
TTL_S = 2

POLICY = """\
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: edge}}
spec:
  discovery: api
  ports: [{{port: {port}}}]
  endpoints: [{{cluster: eu-west, address: {static}}}]
---
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: fixed}}
spec:
  ports: [{{port: {port}}}]
  endpoints: [{{cluster: eu-west, address: {static}}}]
---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {{name: edge}}
spec:
  hosts: [edge.mesh.example]
  http: [{{route: [{{service: edge}}]}}]
---
apiVersion: ubiq.io/v1alpha1
kind: GlobalService
metadata: {{name: edge}}
spec:
  name: {name}
  zone: gtm.example
  service: edge
  strategy: weighted
  maxAnswers: 4
  ttl: 5s
  targets: [{{cluster: eu-west, address: {static}, port: {port}}}]
"""


@pytest.fixture(autouse=True)
def _api_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ubiq serve and ubiq CLI started here holds the write token (from the environment)."""
    monkeypatch.setenv("UBIQ_API_TOKEN", API_TOKEN)


@pytest.fixture
def backends() -> Iterator[int]:
    """The static endpoint's backend and the "VM"'s, on one free port at two addresses."""
    with demo_backends(
        free_port(STATIC), ("edge", "eu-west", "static", STATIC), ("edge", "eu-west", "vm", VM)
    ) as port:
        yield port


def write_policy(root: Path, port: int) -> None:
    root.mkdir(parents=True)
    (root / "edge.yaml").write_text(
        clusters("eu-west") + POLICY.format(port=port, static=STATIC, name=NAME)
    )


class Heartbeats(threading.Thread):
    """Heartbeats every TTL/4, in turn through each API, until stopped (bounded in count)."""

    def __init__(self, apis: Sequence[str], limit: int = 2000) -> None:
        super().__init__(daemon=True)
        self.apis, self.limit = list(apis), limit
        self.sent = 0
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        for i in range(self.limit):
            if self.stop.wait(TTL_S / 4):
                return
            api = self.apis[i % len(self.apis)]
            reply = httpx.post(f"{api}/v1/endpoints/edge/vm-1/heartbeat", headers=AUTH, timeout=5)
            if reply.status_code != 200:
                self.errors.append(f"{reply.status_code} {reply.text}")
            self.sent += 1


def served_versions(listener: int, count: int = 20) -> set[str]:
    with httpx.Client(base_url=f"http://127.0.0.1:{listener}", timeout=5) as client:
        return {
            client.get("/", headers={"host": "edge.mesh.example"}).headers.get(
                "x-ubiq-version", "none"
            )
            for _ in range(count)
        }


def eds_addresses(envoy: EnvoyProcess) -> str:
    return httpx.get(f"http://127.0.0.1:{envoy.admin_port}/clusters", timeout=5).text


def scenario(
    register_api: str,
    apis: Sequence[str],
    dns_ports: Sequence[int],
    envoy: EnvoyProcess,
    listener: int,
    port: int,
) -> None:
    def answers() -> list[list[str]]:
        return [query(p, timeout=2, name=NAME) for p in dns_ports]

    wait_until(lambda: served_versions(listener) == {"static"}, 30, "Envoy routing to static")
    assert answers() == [[STATIC]] * len(dns_ports)

    # bad registrations: one line naming the problem, nothing registered
    for service, body, expected in (
        ("fixed", {"cluster": "eu-west", "address": VM}, "discovery: api"),
        ("edge", {"cluster": "nowhere", "address": VM}, "cluster"),
        ("edge", {"cluster": "eu-west", "address": "not-an-ip"}, "address"),
        ("edge", {"cluster": "eu-west", "address": VM, "ttl": 0}, "ttl"),
    ):
        reply = httpx.post(
            f"{register_api}/v1/endpoints/{service}", json=body, headers=AUTH, timeout=5
        )
        assert reply.status_code == 422 and expected in reply.text, reply.text

    for content, status in ((b"{not json", 400), (b"[]", 400), (b"{" + b" " * 20_000 + b"}", 413)):
        reply = httpx.post(
            f"{register_api}/v1/endpoints/edge", content=content, headers=AUTH, timeout=5
        )
        assert reply.status_code == status, reply.text
    many = {"cluster": "eu-west", "address": VM, "labels": {f"k{i}": "v" for i in range(33)}}
    reply = httpx.post(f"{register_api}/v1/endpoints/edge", json=many, headers=AUTH, timeout=5)
    assert reply.status_code == 422 and "labels: at most 32" in reply.text, reply.text
    assert httpx.get(f"{register_api}/v1/endpoints", headers=AUTH, timeout=5).json() == []

    body = {"cluster": "eu-west", "address": VM, "port": port, "ttl": TTL_S, "id": "vm-1"}
    reply = httpx.post(f"{register_api}/v1/endpoints/edge", json=body, headers=AUTH, timeout=5)
    assert reply.status_code == 201, reply.text
    beats = Heartbeats(apis)
    beats.start()
    try:
        wait_until(lambda: "vm" in served_versions(listener), 15, "Envoy routing to the VM")
        wait_until(
            lambda: answers() == [sorted([STATIC, VM])] * len(dns_ports), 15, "DNS answering the VM"
        )
        # heartbeats keep it: after heartbeats spanning three TTLs it is still served
        wait_until(lambda: beats.sent >= 12, 30, "heartbeats over three TTLs")
        assert beats.errors == []
        assert answers() == [sorted([STATIC, VM])] * len(dns_ports)
        assert VM in eds_addresses(envoy)
        for api in apis:
            listed = httpx.get(f"{api}/v1/endpoints/edge", headers=AUTH, timeout=5).json()
            assert [e["id"] for e in listed] == ["vm-1"]
    finally:
        beats.stop.set()
        beats.join(10)

    # heartbeats stopped: it leaves EDS and DNS within its TTL
    wait_until(lambda: VM not in eds_addresses(envoy), TTL_S * 5, "the VM gone from EDS")
    wait_until(lambda: answers() == [[STATIC]] * len(dns_ports), TTL_S * 5, "the VM gone from DNS")
    assert served_versions(listener) == {"static"}
    reply = httpx.post(f"{apis[-1]}/v1/endpoints/edge/vm-1/heartbeat", headers=AUTH, timeout=5)
    assert reply.status_code == 404, reply.text

    # deregistering takes it out at once
    assert (
        httpx.post(
            f"{register_api}/v1/endpoints/edge", json=body, headers=AUTH, timeout=5
        ).status_code
        == 201
    )
    wait_until(lambda: VM in eds_addresses(envoy), 15, "the VM back in EDS")
    assert (
        httpx.delete(f"{apis[-1]}/v1/endpoints/edge/vm-1", headers=AUTH, timeout=5).status_code
        == 204
    )
    wait_until(lambda: VM not in eds_addresses(envoy), 15, "the VM gone after deregistering")
    assert answers() == [[STATIC]] * len(dns_ports)


@contextmanager
def envoy_on(stack: ExitStack, workdir: Path, xds_port: int) -> Iterator[EnvoyProcess]:
    workdir.mkdir(exist_ok=True)
    envoy = start_envoy(
        workdir, cluster="eu-west", region="eu-west", zone="eu-west-1a", xds_port=xds_port
    )
    stack.callback(envoy.stop)
    yield envoy


def test_registration_on_a_policy_directory(tmp_path: Path, backends: int) -> None:
    require_binary("envoy")
    root = tmp_path / "policies"
    write_policy(root, backends)
    listener = free_port()
    with ExitStack() as stack:
        served = stack.enter_context(
            serving(
                root,
                tmp_path,
                "--listener-address",
                "127.0.0.1",
                "--listener-port",
                str(listener),
            )
        )
        envoy = stack.enter_context(envoy_on(stack, tmp_path / "envoy", served.xds_port))
        scenario(served.api, [served.api], [served.dns_port], envoy, listener, backends)

        # the same through `ubiq endpoint`
        api = ["--api", served.api]
        out = ubiq(
            "endpoint", "register", "edge", "--cluster", "eu-west", "--address", VM,
            "--port", str(backends), "--label", "version=v9", "--ttl", "30", *api,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert f"edge/eu-west.{VM}.{backends}  eu-west  {VM}:{backends}" in out.stdout
        wait_until(lambda: VM in eds_addresses(envoy), 15, "the VM in EDS (CLI)")
        listed = json.loads(ubiq("endpoint", "list", "-o", "json", *api).stdout)
        assert [(e["id"], e["labels"]) for e in listed] == [
            (f"eu-west.{VM}.{backends}", {"version": "v9"})
        ]
        beat = ubiq("endpoint", "heartbeat", "edge", f"eu-west.{VM}.{backends}", *api)
        assert beat.returncode == 0 and "ttl 30s" in beat.stdout, beat.stderr
        gone = ubiq("endpoint", "deregister", "edge", f"eu-west.{VM}.{backends}", *api)
        assert gone.returncode == 0, gone.stderr
        wait_until(lambda: VM not in eds_addresses(envoy), 15, "the VM gone (CLI)")
        refused = ubiq(
            "endpoint", "register", "fixed", "--cluster", "eu-west", "--address", VM, *api
        )
        assert refused.returncode == 1 and "discovery: api" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        late = ubiq("endpoint", "heartbeat", "edge", "nobody", *api)
        assert late.returncode == 1 and "HTTP 404" in late.stderr


def test_registration_shared_through_etcd(tmp_path: Path, backends: int) -> None:
    require_binary("envoy")
    root = tmp_path / "policies"
    write_policy(root, backends)
    listener = free_port()
    with ExitStack() as stack:
        etcd = stack.enter_context(etcd_cluster(tmp_path / "etcd", 1))
        url = etcd.url("/ubiq")
        asyncio.run(EtcdStore.from_url(url).import_directory(root))
        replicas = [Replica(f"r{i}", url, listener, tmp_path / f"r{i}.log") for i in range(2)]
        for r in replicas:
            stack.enter_context(running(r.argv(), log=r.log))
        for r in replicas:
            wait_for_port("127.0.0.1", r.api_port, 30)
        envoy = stack.enter_context(envoy_on(stack, tmp_path / "envoy", replicas[1].xds))
        scenario(
            replicas[0].api,
            [r.api for r in replicas],
            [r.dns for r in replicas],
            envoy,
            listener,
            backends,
        )
