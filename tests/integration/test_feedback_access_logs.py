"""Client-group latency measured from a real Envoy's access logs streamed over gRPC (ALS).

The Envoy's listener (compiled with ``access_log_cluster="ubiq_xds"``) streams its HTTP access
logs to the same gRPC server that serves it xDS; the receiver maps the client address (loopback)
to its GTM client group and keeps an EWMA of request durations per (group, region).
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import grpc
import httpx
import pytest

from controlplane.feedback.access_logs import AccessLogReceiver
from controlplane.feedback.client_latency import ClientLatencyTable
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.types import ClientGroup
from controlplane.policy.loader import load_texts
from controlplane.ports import free_port
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.compiler import CompileOptions, NodeIdentity, compile_node_resources
from controlplane.xds.node import group_key
from controlplane.xds.server import XdsServer
from controlplane.xds.snapshot import Snapshot
from tests.support.backends import backends
from tests.support.envoy import envoy
from tests.support.poll import wait_until
from tests.support.xds_rig import xds_server_thread

pytestmark = pytest.mark.integration

NODE = NodeIdentity("eu-west-1", "eu-west", "eu-west-1a")


class XdsAndAccessLogs:
    """Ubiq's xDS server and the access-log receiver on one gRPC server, as ``ubiq serve`` would."""

    def __init__(self, xds: XdsServer, receiver: AccessLogReceiver) -> None:
        self.xds = xds
        self.receiver = receiver
        self._server: grpc.aio.Server | None = None

    async def start(self, address: str) -> int:
        self._server = grpc.aio.server()
        self.xds.add_to_server(self._server)
        self.receiver.add_to_server(self._server)
        port = self._server.add_insecure_port(address)
        await self._server.start()
        return port

    async def stop(self, grace: float | None = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)


def test_request_durations_per_client_group_and_region(tmp_path: Path) -> None:
    groups = ClientGroups([ClientGroup("loopback", (ipaddress.ip_network("127.0.0.0/8"),))])
    table = ClientLatencyTable(alpha=0.3)
    receiver = AccessLogReceiver(table, groups.lookup)
    cache = SnapshotCache()
    listener = free_port()
    with (
        backends("web") as b,
        xds_server_thread(XdsAndAccessLogs(XdsServer(cache), receiver)) as server,  # type: ignore[arg-type]
    ):
        model = load_texts(
            [
                (
                    "als.yaml",
                    f"""apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {{name: eu-west-1}}
spec: {{region: eu-west, zone: eu-west-1a}}
---
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: web}}
spec:
  ports: [{{port: 8080}}]
  endpoints: [{{cluster: eu-west-1, address: 127.0.0.1, port: {b["web"].port}}}]
---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {{name: web}}
spec: {{hosts: [web.test], http: [{{route: [{{service: web}}]}}]}}
""",
                )
            ]
        )
        options = CompileOptions(
            listener_address="127.0.0.1",
            listener_ports={NODE.cluster: listener},
            access_log_cluster="ubiq_xds",
            access_log_flush_ms=200,
        )
        cache.set_snapshot(
            group_key(NODE.cluster),
            Snapshot.build(compile_node_resources(model, NODE, options)),
        )
        with (
            envoy(tmp_path, xds_port=server.port, cluster=NODE.cluster, region=NODE.region,
                  zone=NODE.zone),
            httpx.Client(base_url=f"http://127.0.0.1:{listener}", headers={"host": "web.test"}) as client,
        ):  # fmt: skip
            wait_until(lambda: client.get("/").status_code == 200, 20, "listener serving")
            wait_until(lambda: table.count("loopback", "eu-west") > 0, 15, "first access log")
            fast = table.snapshot()[("loopback", "eu-west")]
            assert 0 <= fast < 100, fast

            b["web"].delay = 0.15
            deadline = time.monotonic() + 30
            for _ in range(40):  # bounded in count and time
                if time.monotonic() > deadline:
                    break
                assert client.get("/").status_code == 200
            wait_until(
                lambda: table.snapshot()[("loopback", "eu-west")] > 120, 15, "slow requests logged"
            )
    assert receiver.entries >= 10  # the last batch may still sit in Envoy's buffer
    assert set(table.snapshot()) == {("loopback", "eu-west")}
