"""gRPC through a real Envoy configured by Ubiq: HTTP/2 upstreams, gRPC retries, metadata routing.

One rig per ADS mode (SotW, Delta), shared by the module: an XdsServer fed with the compiler's
output for a policy whose Services have ``protocol: GRPC`` ports, one Envoy, and grpc.aio
backends that say who served them. The client is grpcio's own, talking h2c to Envoy's listener.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.policy.loader import load_texts
from controlplane.xds.bootstrap import Mode
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.compiler import CompileOptions, NodeIdentity, compile_node_resources
from controlplane.xds.node import group_key
from controlplane.xds.server import XdsServer
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import StatusRegistry
from tests.support.envoy import EnvoyProcess, envoy
from tests.support.grpc_backends import GrpcBackend, echo, grpc_backends
from tests.support.policy import GRPC_PORT, cluster, join, service
from tests.support.poll import wait_until
from tests.support.procs import free_port
from tests.support.xds_rig import wait_acked, xds_server_thread

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("reset_backends")]

NODE = NodeIdentity("eu-west", "eu-west", "eu-west-1a")
BACKENDS = ("echo-v1", "echo-v2", "flaky")


def policy_text(b: dict[str, GrpcBackend]) -> str:
    def ep(name: str, labels: str = "{}") -> str:
        return f"{{cluster: eu-west, address: 127.0.0.1, port: {b[name].port}, labels: {labels}}}"

    echo = service(
        "echo",
        GRPC_PORT,
        f"[{ep('echo-v1', '{version: v1}')}, {ep('echo-v2', '{version: v2}')}]",
        "subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]",
    )
    flaky = service("flaky", GRPC_PORT, f"[{ep('flaky')}]")
    return (
        join(cluster("eu-west", "eu-west-1a"), echo, flaky)
        + """---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {name: echo}
spec:
  hosts: [echo.test]
  http:
  - name: canary
    match: [{path: {prefix: /demo.Echo/}, headers: {x-canary: {exact: "true"}}}]
    route: [{service: echo, subset: v2}]
  - name: stable
    match: [{path: {prefix: /demo.Echo/}}]
    route: [{service: echo, subset: v1}]
---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {name: retry}
spec:
  hosts: [retry.test]
  http:
  - match: [{path: {prefix: /demo.Echo/}}]
    route: [{service: flaky}]
    retries: {attempts: 2, retryOn: [unavailable]}
---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {name: noretry}
spec:
  hosts: [noretry.test]
  http:
  - match: [{path: {prefix: /demo.Echo/}}]
    route: [{service: flaky}]
"""
    )


class Rig:
    def __init__(self, port: int, backends: dict[str, GrpcBackend], proxy: EnvoyProcess) -> None:
        self.port = port
        self.backends = backends
        self.proxy = proxy
        self._channels: dict[str, grpc.Channel] = {}

    def channel(self, host: str) -> grpc.Channel:
        """A grpcio channel to Envoy's listener whose :authority is ``<host>.test``."""
        if host not in self._channels:
            self._channels[host] = grpc.insecure_channel(
                f"127.0.0.1:{self.port}", options=[("grpc.default_authority", f"{host}.test")]
            )
        return self._channels[host]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


@contextlib.contextmanager
def make_rig(tmp_path: Path, mode: Mode) -> Iterator[Rig]:
    cache, status = SnapshotCache(), StatusRegistry()
    port = free_port()
    options = CompileOptions(listener_address="127.0.0.1", listener_port=port)
    with (
        grpc_backends(*BACKENDS) as started,
        xds_server_thread(XdsServer(cache, status=status)) as xds,
    ):
        model = load_texts([("grpc.yaml", policy_text(started))])
        snapshot = Snapshot.build(compile_node_resources(model, NODE, options))
        cache.set_snapshot(group_key(NODE.cluster), snapshot)
        with envoy(
            tmp_path,
            xds_port=xds.port,
            mode=mode,
            node_id=f"grpc-{mode}",
            cluster=NODE.cluster,
            region=NODE.region,
            zone=NODE.zone,
        ) as proxy:
            wait_acked(status, proxy.node_id, snapshot)
            rig = Rig(port, started, proxy)
            try:
                wait_until(lambda: echo(rig.channel("echo"))[0], 20, "gRPC through the listener")
                yield rig
            finally:
                rig.close()


@pytest.fixture(scope="module")
def rig(ads_mode: Mode, rig_dir: Path) -> Iterator[Rig]:
    with make_rig(rig_dir, ads_mode) as r:
        yield r


def test_unary_calls_reach_the_grpc_backend_over_http2(rig: Rig) -> None:
    for i in range(10):
        payload, metadata = echo(rig.channel("echo"), f"call-{i}".encode())
        assert payload == f"echo-v1|call-{i}".encode()
        assert metadata["x-backend"] == "echo-v1"
    assert rig.backends["echo-v1"].count == 10
    assert "x-request-id" in rig.backends["echo-v1"].seen_metadata, "not via Envoy"
    # the upstream leg is HTTP/2 (protocol: GRPC), counted by Envoy per cluster
    assert rig.proxy.stat("cluster.echo|v1.upstream_cx_http2_total") >= 1
    assert rig.proxy.stat("cluster.echo|v1.upstream_cx_http1_total") == 0


def test_unknown_authority_is_unimplemented(rig: Rig) -> None:
    with pytest.raises(grpc.RpcError) as info:
        echo(rig.channel("nowhere"))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED  # Envoy's 404, mapped by gRPC


def test_retries_turn_unavailable_into_success(rig: Rig) -> None:
    flaky = rig.backends["flaky"]
    flaky.fail_every = 2
    control: list[grpc.StatusCode] = []
    for _ in range(20):
        try:
            echo(rig.channel("noretry"))
            control.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            control.append(exc.code())
    assert control.count(grpc.StatusCode.UNAVAILABLE) == 10, control
    assert control.count(grpc.StatusCode.OK) == 10, control

    flaky.reset()
    flaky.fail_every = 2
    retries_before = rig.proxy.stat("cluster.flaky.upstream_rq_retry")
    for i in range(40):
        payload, metadata = echo(rig.channel("retry"), f"r{i}".encode())
        assert (payload, metadata["x-backend"]) == (f"flaky|r{i}".encode(), "flaky")
    # call 1 succeeds at once; every later call meets the failing Nth attempt first, then retries
    assert flaky.count == 79
    assert rig.proxy.stat("cluster.flaky.upstream_rq_retry") - retries_before == 39


def test_metadata_header_routes_to_the_canary_subset(rig: Rig) -> None:
    channel = rig.channel("echo")
    for _ in range(5):
        _, md = echo(channel, metadata=(("x-canary", "true"),))
        assert md["x-backend"] == "echo-v2"
        _, md = echo(channel, metadata=(("x-canary", "false"),))
        assert md["x-backend"] == "echo-v1"
        _, md = echo(channel)
        assert md["x-backend"] == "echo-v1"
    assert rig.backends["echo-v2"].count == 5
    assert rig.backends["echo-v2"].seen_metadata["x-canary"] == "true"
