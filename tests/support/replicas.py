"""`ubiq serve --store etcd://...` replicas for the replica tests: their argv, their API, and the
xDS version each serves over a real ADS stream."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from controlplane.demo.backends import DemoBackend
from controlplane.xds.node import CLUSTER_KEY
from tests.support.procs import free_port, free_udp_tcp_port

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"

#: the token the replica tests give ``ubiq serve`` (env UBIQ_API_TOKEN) and send
API_TOKEN = "replica-tests-token"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@contextmanager
def demo_backends(port: int, *backends: tuple[str, str, str, str]) -> Iterator[int]:
    """Demo backends ``(service, cluster, version, address)``, all on ``port``, served from an
    event loop in a thread of their own for the block; yields ``port``."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started = [DemoBackend(*b, port) for b in backends]
    try:
        for b in started:
            asyncio.run_coroutine_threadsafe(b.start(), loop).result(5)
        yield port
    finally:
        for b in started:
            asyncio.run_coroutine_threadsafe(b.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


class Replica:
    def __init__(
        self, name: str, store: str, listener: int, log: Path, extra: Sequence[str] = ()
    ) -> None:
        self.name, self.store, self.listener, self.log = name, store, listener, log
        self.extra = list(extra)
        self.xds, self.dns, self.api_port = free_port(), free_udp_tcp_port(), free_port()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "controlplane.cli", "--log-format", "json", "serve",
            "--store", self.store, "--xds", f"127.0.0.1:{self.xds}",
            "--dns", f"127.0.0.1:{self.dns}", "--api", f"127.0.0.1:{self.api_port}",
            "--listener-address", "127.0.0.1", "--listener-port", str(self.listener),
            *self.extra,
        ]  # fmt: skip

    def get(self, path: str) -> Any:
        reply = httpx.get(f"{self.api}{path}", headers=AUTH, timeout=5)
        reply.raise_for_status()
        return reply.json()

    def status(self) -> dict[str, Any]:
        return dict(self.get("/v1/status"))

    def model_hash(self) -> str:
        return str(self.status()["policy"]["modelHash"])

    def proxy_versions(self, node_id: str) -> dict[str, str] | None:
        for proxy in self.status()["proxies"]:
            if proxy["nodeId"] == node_id:
                return dict(proxy["acked"])
        return None


@contextmanager
def logs_on_failure(replicas: Sequence[Replica], lines: int = 40) -> Iterator[None]:
    """On a failure inside the block, print each replica's last log lines (pytest shows them)."""
    try:
        yield
    except BaseException:
        for r in replicas:
            tail = r.log.read_text(errors="replace").splitlines()[-lines:] if r.log.exists() else []
            print(f"--- {r.name} ({r.log}), last {len(tail)} lines", *tail, sep="\n")
        raise


def xds_version(port: int, cluster: str, type_url: str) -> str:
    """The version_info a replica serves to a node of ``cluster``, over a real ADS stream."""
    metadata = struct_pb2.Struct()
    metadata.update({CLUSTER_KEY: cluster})
    node = base_pb2.Node(id="probe", cluster=cluster, metadata=metadata)
    done = threading.Event()

    def requests() -> Iterator[discovery_pb2.DiscoveryRequest]:
        yield discovery_pb2.DiscoveryRequest(node=node, type_url=type_url)
        done.wait(10)

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
            requests(), timeout=10
        )
        response = next(call)
        done.set()
        call.cancel()
    return str(response.version_info)


def xds_versions(port: int, cluster: str) -> tuple[str, str]:
    return xds_version(port, cluster, CDS), xds_version(port, cluster, LDS)
