"""What a RoutePolicy / TrafficPolicy does to a proxyless grpcio client (no Envoy in the path).

One Ubiq xDS runtime (as ``ubiq serve`` runs it) and real gRPC backends; each test runs a real
grpcio client (``tests.support.grpc_calls``, target ``xds:///<host>``) in a subprocess against
it: fault abort (gRFC A33), retries on a gRPC status (A44), the route timeout as the call's
deadline (A31), ring hash on a header (A42), failure-percentage outlier ejection (A50).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest

from controlplane.policy.loader import load_texts
from tests.integration.test_xds_proxyless_grpc import ROOT, bootstrap
from tests.support.grpc_backends import GrpcBackend, grpc_backends
from tests.support.xds_rig import runtime_thread

pytestmark = pytest.mark.integration

BACKENDS = ("plain", "flaky", "slow", "hash-a", "hash-b", "od-good", "od-bad")


def policy_text(b: dict[str, GrpcBackend]) -> str:
    def service(name: str, *backends: str) -> str:
        eps = ", ".join(
            f"{{cluster: eu-west, address: 127.0.0.1, port: {b[n].port}}}" for n in backends
        )
        return f"""---
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: {name}}}
spec:
  ports: [{{name: grpc, port: 9000, protocol: GRPC}}]
  endpoints: [{eps}]
"""

    def route(host: str, service: str, extra: str = "") -> str:
        return f"""---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {{name: {host}}}
spec:
  hosts: [{host}.test]
  http: [{{route: [{{service: {service}}}]{extra}}}]
"""

    return "".join(
        [
            """apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: eu-west}
spec: {region: eu-west, zone: eu-west-1a}
""",
            service("plain", "plain"),
            service("flaky", "flaky"),
            service("slow", "slow"),
            service("hash", "hash-a", "hash-b"),
            service("od", "od-good", "od-bad"),
            """---
apiVersion: ubiq.io/v1alpha1
kind: TrafficPolicy
metadata: {name: od}
spec:
  service: od
  outlierDetection:
    interval: 500ms
    baseEjectionTime: 1m
    maxEjectionPercent: 50
    failurePercentage: {threshold: 50, minimumHosts: 2, requestVolume: 3}
""",
            """---
apiVersion: ubiq.io/v1alpha1
kind: TrafficPolicy
metadata: {name: hash}
spec: {service: hash, loadBalancer: {algorithm: RING_HASH, hashKey: {header: x-user-id}}}
""",
            route("abort", "plain", ", fault: {abort: {httpStatus: 503, percent: 100}}"),
            route("retry", "flaky", ", retries: {attempts: 3, retryOn: [unavailable]}"),
            route("noretry", "flaky"),
            route("deadline", "slow", ", timeout: 300ms"),
            route("hash", "hash"),
            route("od", "od"),
        ]
    )


class Client:
    def __init__(self, bootstrap_json: str) -> None:
        self.env = {"GRPC_XDS_BOOTSTRAP_CONFIG": bootstrap_json, "PYTHONPATH": str(ROOT)}

    def calls(
        self, host: str, count: int, header: str | None = None, pause: float = 0.0
    ) -> list[tuple[str, ...]]:
        """(``ok``, backend, key) or (``err``, code, key) per call, in order."""
        argv = [sys.executable, "-m", "tests.support.grpc_calls", f"xds:///{host}.test", str(count)]
        argv += [header or "-", str(pause)]
        done = subprocess.run(
            argv, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        lines = done.stdout.splitlines()
        assert lines and lines[-1] == "done", done.stdout[-2000:] + done.stderr[-3000:]
        return [tuple(line.split()) for line in lines[:-1]]


@pytest.fixture(scope="module")
def rig() -> Iterator[tuple[Client, dict[str, GrpcBackend]]]:
    with grpc_backends(*BACKENDS) as backends:
        model = load_texts([("proxyless.yaml", policy_text(backends))])
        with runtime_thread(model) as (_, xds_port, _):
            yield Client(bootstrap(xds_port)), backends


@pytest.fixture(autouse=True)
def _reset(rig: tuple[Client, dict[str, GrpcBackend]]) -> None:
    for backend in rig[1].values():
        backend.reset()


def test_fault_abort_reaches_the_proxyless_client(
    rig: tuple[Client, dict[str, GrpcBackend]],
) -> None:
    client, backends = rig
    results = client.calls("abort", 20)
    assert {r[:2] for r in results} == {("err", "UNAVAILABLE")}  # HTTP 503 -> UNAVAILABLE
    assert backends["plain"].count == 0  # the client aborted the calls itself


def test_retries_on_a_grpc_status(rig: tuple[Client, dict[str, GrpcBackend]]) -> None:
    client, backends = rig
    backends["flaky"].fail_every = 2
    control = client.calls("noretry", 10)
    assert Counter(r[:2] for r in control) == {("ok", "flaky"): 5, ("err", "UNAVAILABLE"): 5}
    backends["flaky"].reset()
    backends["flaky"].fail_every = 2
    assert {r[:2] for r in client.calls("retry", 20)} == {("ok", "flaky")}
    assert backends["flaky"].count >= 30  # every other attempt was a retry


def test_route_timeout_is_the_calls_deadline(rig: tuple[Client, dict[str, GrpcBackend]]) -> None:
    client, backends = rig
    backends["slow"].delay = 3.0  # the client's own deadline is 10 s
    results = client.calls("deadline", 3)
    assert {r[:2] for r in results} == {("err", "DEADLINE_EXCEEDED")}


def test_ring_hash_keeps_each_key_on_one_backend(
    rig: tuple[Client, dict[str, GrpcBackend]],
) -> None:
    client, _ = rig
    results = client.calls("hash", 100, header="x-user-id")
    assert {r[0] for r in results} == {"ok"}
    by_key: dict[str, set[str]] = {}
    for _, backend, key in results:
        by_key.setdefault(key, set()).add(backend)
    assert all(len(b) == 1 for b in by_key.values()), by_key
    assert set().union(*by_key.values()) == {"hash-a", "hash-b"}


def test_failure_percentage_ejects_the_failing_backend(
    rig: tuple[Client, dict[str, GrpcBackend]],
) -> None:
    client, backends = rig
    backends["od-bad"].fail_every = 1  # every call fails
    results = client.calls("od", 80, pause=0.05)  # 4 s: several 500 ms intervals
    assert ("err", "UNAVAILABLE") in {r[:2] for r in results[:20]}  # round robin hit it at first
    assert {r[:2] for r in results[-20:]} == {("ok", "od-good")}  # then it was ejected
