"""xDS over mTLS, driven by real grpcio clients on loopback: only a certificate from the client
CA connects, and a certificate gets only the configuration of the node and cluster it names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.node import CLUSTER_KEY, group_key
from controlplane.xds.resources import CLUSTER
from controlplane.xds.server import XdsServer
from controlplane.xds.status import StatusRegistry
from controlplane.xds.tls import ReloadingTls
from tests.support.pki import Pair, TestPki
from tests.support.poll import until
from tests.support.xds_replay import snapshot

pytestmark = pytest.mark.integration


class Served:
    def __init__(self, server: XdsServer, port: int, pki: TestPki) -> None:
        self.server = server
        self.port = port
        self.pki = pki

    def channel(self, creds: grpc.ChannelCredentials) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(
            f"127.0.0.1:{self.port}",
            creds,
            options=[("grpc.ssl_target_name_override", "localhost")],
        )

    def node_channel(self, pair: Pair, ca: Path | None = None) -> grpc.aio.Channel:
        root = (ca or self.pki.ca).read_bytes()
        return self.channel(grpc.ssl_channel_credentials(root, pair.key_pem, pair.cert_pem))


def node(node_id: str, cluster: str, *, metadata_cluster: str | None = None) -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    metadata.update({CLUSTER_KEY: metadata_cluster or cluster})
    return base_pb2.Node(id=node_id, cluster=cluster, metadata=metadata)


def cds_request(n: base_pb2.Node) -> discovery_pb2.DiscoveryRequest:
    return discovery_pb2.DiscoveryRequest(node=n, type_url=CLUSTER)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    pki = TestPki(tmp_path / "pki")
    cache, status = SnapshotCache(), StatusRegistry()
    cache.set_snapshot(group_key("cluster-a"), snapshot({"a-only": [9001]}))
    cache.set_snapshot(group_key("cluster-b"), snapshot({"b-secret": [9002]}))
    server = XdsServer(cache, status=status, tls=ReloadingTls(pki.server_files()))
    port = await server.start("127.0.0.1:0")
    try:
        yield Served(server, port, pki)
    finally:
        await server.stop(0)


async def first_response(
    channel: grpc.aio.Channel, request: discovery_pb2.DiscoveryRequest
) -> discovery_pb2.DiscoveryResponse:
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    await call.write(request)
    try:
        response: discovery_pb2.DiscoveryResponse = await asyncio.wait_for(call.read(), 10)
        return response
    finally:
        call.cancel()


async def test_a_node_gets_its_own_clusters_configuration(served: Served) -> None:
    pair = served.pki.node("cluster-a", "envoy-a1")
    async with served.node_channel(pair) as channel:
        response = await first_response(channel, cds_request(node("envoy-a1", "cluster-a")))
    assert response.type_url == CLUSTER
    assert "a-only" in str(response.resources[0].value)


@pytest.mark.parametrize(
    "claimed",
    [
        node("envoy-a1", "cluster-b"),  # the other cluster, by node.cluster and metadata
        node("envoy-a1", "cluster-a", metadata_cluster="cluster-b"),  # by metadata only
        node("envoy-b1", "cluster-b"),  # another node's id too
        node("envoy-a2", "cluster-a"),  # its cluster, but another node id
    ],
    ids=["cluster", "metadata", "node-and-cluster", "node-id"],
)
async def test_a_certificate_for_cluster_a_claiming_otherwise_is_denied(
    served: Served, claimed: base_pb2.Node
) -> None:
    pair = served.pki.node("cluster-a", "envoy-a1")
    async with served.node_channel(pair) as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        await call.write(cds_request(claimed))
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for response in call:
                received.append(response)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value
        assert received == []  # nothing else: not one resource before the refusal
        assert "certificate" in (info.value.details() or "")
        # the refused stream never registered as a proxy; a rightful stream on the same
        # connection then does (the event that must come after)
        response = await first_response(channel, cds_request(node("envoy-a1", "cluster-a")))
        assert "a-only" in str(response.resources[0].value)
    assert served.server.status.proxies() == [] or all(
        p.node_id == "envoy-a1" and p.group == group_key("cluster-a")
        for p in served.server.status.proxies()
    )


async def expect_unavailable(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await first_response(channel, cds_request(node("envoy-a1", "cluster-a")))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    return info.value


async def test_no_certificate_or_another_cas_cannot_connect(served: Served, tmp_path: Path) -> None:
    root = served.pki.ca.read_bytes()
    async with served.channel(grpc.ssl_channel_credentials(root)) as channel:
        await expect_unavailable(channel)  # TLS without a client certificate
    other = TestPki(tmp_path / "other")
    foreign = other.node("cluster-a", "envoy-a1")  # the right names, signed by another CA
    async with served.node_channel(foreign) as channel:
        await expect_unavailable(channel)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        await expect_unavailable(channel)  # plaintext
    assert served.server.status.proxies() == []
    # the server still serves the rightful client afterwards
    async with served.node_channel(served.pki.node("cluster-a", "envoy-a1")) as channel:
        response = await first_response(channel, cds_request(node("envoy-a1", "cluster-a")))
    assert response.resources


async def test_rotated_client_ca_is_picked_up_by_new_connections(
    served: Served, tmp_path: Path
) -> None:
    """CA rotation: the client CA file becomes old+new bundle; a node with a certificate from
    the new CA connects on its next handshake, and the server was never restarted."""
    new = TestPki(tmp_path / "new")
    newcomer = new.node("cluster-b", "envoy-b1")
    async with served.node_channel(newcomer) as channel:
        await expect_unavailable(channel)
    tls = served.server.tls
    assert tls is not None
    bundle = served.pki.ca.read_bytes() + new.ca.read_bytes()
    tls.files.client_ca.write_bytes(bundle)
    async with served.node_channel(newcomer) as channel:
        response = await first_response(channel, cds_request(node("envoy-b1", "cluster-b")))
    assert "b-secret" in str(response.resources[0].value)
    await until(lambda: tls.reloads == 1)
