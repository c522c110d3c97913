"""examples/istio-tasks: each of Istio's traffic-management tasks, written in Ubiq YAML, driven
through a real Envoy.

The directory is loaded as written (it must validate as is); only its endpoint ports (19081..)
are moved to this test's loopback backends. One Envoy in eu-west gets the compiled resources
from Ubiq's xDS server; each test drives one task file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controlplane.policy.loader import load_directory, load_texts, policy_files
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.compiler import CompileOptions, NodeIdentity, compile_node_resources
from controlplane.xds.node import group_key
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.server import XdsServer
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import StatusRegistry
from tests.support.backends import Backend, backends
from tests.support.envoy import EnvoyProcess, envoy
from tests.support.poll import wait_until
from tests.support.procs import free_port
from tests.support.xds_rig import xds_server_thread

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "istio-tasks"
NODE = NodeIdentity("eu-west", "eu-west", "eu-west-1a")
#: the example's endpoint ports -> this test's backends
PORTS = {
    19081: "reviews-v1", 19082: "reviews-v2", 19083: "reviews-v3", 19084: "ratings",
    19085: "httpbin-v1", 19086: "httpbin-v2", 19087: "details-a", 19088: "details-b",
    19089: "helloworld-eu", 19090: "helloworld-us",
}  # fmt: skip


class Tasks:
    def __init__(self, proxy: EnvoyProcess, port: int, started: dict[str, Backend]) -> None:
        self.proxy = proxy
        self.port = port
        self.backends = started
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def get(self, host: str, **headers: str) -> httpx.Response:
        return self.client.get("/", headers={"host": host, **headers})


def served_by(reply: httpx.Response) -> str:
    return str(reply.headers.get("x-backend", ""))


def with_ports(started: dict[str, Backend]) -> list[tuple[str, str]]:
    texts = []
    files, _ = policy_files(EXAMPLE)
    for path in files:
        text = path.read_text()
        for example_port, name in PORTS.items():
            text = re.sub(rf"\bport: {example_port}\b", f"port: {started[name].port}", text)
        texts.append((str(path), text))
    return texts


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tasks]:
    load_directory(EXAMPLE)  # the example is valid as written
    cache, status = SnapshotCache(), StatusRegistry()
    port = free_port()
    options = CompileOptions(listener_address="127.0.0.1", listener_port=port)
    with (
        backends(*PORTS.values()) as started,
        xds_server_thread(XdsServer(cache, status=status)) as xds,
        contextlib.ExitStack() as stack,
    ):
        model = load_texts(with_ports(started))
        snapshot = Snapshot.build(compile_node_resources(model, NODE, options))
        cache.set_snapshot(group_key(NODE.cluster), snapshot)
        proxy = stack.enter_context(
            envoy(tmp_path_factory.mktemp("istio-tasks"), xds_port=xds.port, node_id="tasks-1",
                  cluster=NODE.cluster, region=NODE.region, zone=NODE.zone)
        )  # fmt: skip

        def acked() -> bool:
            for p in status.proxies():
                if p.node_id == "tasks-1":
                    assert p.last_nack is None, p.last_nack
                    types = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
                    return all(p.acked.get(t) == snapshot.type_version(t) for t in types)
            return False

        wait_until(acked, 20, "Envoy ACK of the istio-tasks snapshot")
        t = Tasks(proxy, port, started)
        stack.callback(t.client.close)
        wait_until(lambda: t.get("reviews.mesh.example").status_code == 200, 20, "serving")
        yield t


@pytest.fixture(autouse=True)
def _reset(tasks: Tasks) -> None:
    for b in tasks.backends.values():
        b.reset()


def test_01_request_routing(tasks: Tasks) -> None:
    assert {served_by(tasks.get("reviews.mesh.example")) for _ in range(10)} == {"reviews-v1"}
    jason = {
        served_by(tasks.get("reviews.mesh.example", **{"end-user": "jason"})) for _ in range(10)
    }
    assert jason == {"reviews-v2"}


def test_02_traffic_shifting(tasks: Tasks) -> None:
    n = 400
    v3 = sum(
        served_by(tasks.get("shifting.reviews.mesh.example")) == "reviews-v3" for _ in range(n)
    )
    assert abs(v3 - n / 2) <= 4.5 * math.sqrt(n / 4), v3


def test_03_fault_injection(tasks: Tasks) -> None:
    started = time.monotonic()
    assert tasks.get("delay.ratings.mesh.example", **{"end-user": "jason"}).status_code == 200
    assert time.monotonic() - started >= 0.98  # Envoy's timers tick in whole milliseconds
    assert tasks.proxy.stat("http.ubiq_http.fault.delays_injected") >= 1
    aborted = tasks.get("abort.ratings.mesh.example", **{"end-user": "jason"})
    assert aborted.status_code == 500 and served_by(aborted) == ""
    assert served_by(tasks.get("abort.ratings.mesh.example")) == "ratings"


def test_04_request_timeouts(tasks: Tasks) -> None:
    tasks.backends["reviews-v2"].delay = 2.0
    reply = tasks.get("timeout.reviews.mesh.example")
    assert (reply.status_code, reply.text) == (504, "upstream request timeout")


def test_05_retries(tasks: Tasks) -> None:
    ratings = tasks.backends["ratings"]
    ratings.fail_every, ratings.fail_status = 2, 409  # a code 5xx does not cover
    assert [tasks.get("retries.ratings.mesh.example").status_code for _ in range(20)] == [200] * 20
    assert tasks.proxy.stat("cluster.ratings.upstream_rq_retry") >= 10
    ratings.reset()
    ratings.fail_every, ratings.fail_status = 2, 503
    assert [tasks.get("retries.ratings.mesh.example").status_code for _ in range(20)] == [200] * 20


def test_06_circuit_breaking(tasks: Tasks) -> None:
    tasks.backends["httpbin-v1"].delay = 0.5

    def one(_: int) -> int:
        with httpx.Client(timeout=10) as client:
            url = f"http://127.0.0.1:{tasks.port}/"
            return client.get(url, headers={"host": "httpbin.mesh.example"}).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(one, range(10)))
    assert 200 in statuses and 503 in statuses, statuses
    assert tasks.proxy.stat("cluster.httpbin|v1.upstream_rq_pending_overflow") > 0


def test_07_outlier_detection(tasks: Tasks) -> None:
    tasks.backends["details-b"].status = 500
    ejections = "cluster.details.outlier_detection.ejections_enforced_total"

    def ejected() -> bool:
        tasks.get("details.mesh.example")  # round robin reaches details-b within two requests
        return tasks.proxy.stat(ejections) >= 1

    wait_until(ejected, 10, "details-b ejected")
    replies = [tasks.get("details.mesh.example") for _ in range(20)]
    assert {(r.status_code, served_by(r)) for r in replies} == {(200, "details-a")}


def test_08_mirroring(tasks: Tasks) -> None:
    # httpbin's circuit breaker (task 06: one connection, one pending request) covers the mirror's
    # cluster too, so a shadow still in flight when the next one starts may overflow and be
    # dropped: each request waits for its mirrored copy before the next is sent.
    mirrored = tasks.backends["httpbin-v2"]
    for n in range(1, 11):
        assert served_by(tasks.get("mirror.httpbin.mesh.example")) == "httpbin-v1"
        wait_until(lambda n=n: mirrored.count >= n, 10, f"mirrored request {n}")
    assert tasks.backends["httpbin-v1"].count == 10


def test_09_locality_failover(tasks: Tasks) -> None:
    assert served_by(tasks.get("helloworld.mesh.example")) == "helloworld-eu"
    tasks.backends["helloworld-eu"].status = 500
    wait_until(
        lambda: served_by(tasks.get("helloworld.mesh.example")) == "helloworld-us",
        10,
        "failover to us-west",
    )
    replies = [served_by(tasks.get("helloworld.mesh.example")) for _ in range(10)]
    assert replies == ["helloworld-us"] * 10
