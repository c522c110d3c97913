"""The ADS server over real gRPC on loopback, driven by a grpc.aio client: per-type services,
bad first requests, and per-connection state freed on disconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.service.cluster.v3 import cds_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.node import group_key
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.server import XdsServer
from controlplane.xds.status import StatusRegistry
from tests.support.poll import until
from tests.support.xds_replay import NODE, snapshot, sotw

pytestmark = pytest.mark.integration

GROUP = group_key("eu-west-1")


@pytest.fixture
async def served() -> AsyncIterator[tuple[XdsServer, grpc.aio.Channel]]:
    cache, status = SnapshotCache(), StatusRegistry()
    cache.set_snapshot(GROUP, snapshot())
    server = XdsServer(cache, status=status)
    port = await server.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield server, channel
    finally:
        await channel.close(None)
        await server.stop(0)


async def test_ads_stream_state_is_freed_on_disconnect(
    served: tuple[XdsServer, grpc.aio.Channel],
) -> None:
    server, channel = served
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    await call.write(sotw(CLUSTER))
    response = await asyncio.wait_for(call.read(), 10)
    assert response.type_url == CLUSTER and len(response.resources) == 2
    await call.write(sotw(CLUSTER, nonce=response.nonce, version=response.version_info))
    await until(lambda: CLUSTER in server.status.proxies()[0].acked)
    assert server.cache.watcher_count(GROUP) == 1
    call.cancel()
    await until(lambda: server.status.proxies() == [] and server.cache.watcher_count() == 0)


async def test_per_type_service_and_live_push(
    served: tuple[XdsServer, grpc.aio.Channel],
) -> None:
    server, channel = served
    call = cds_pb2_grpc.ClusterDiscoveryServiceStub(channel).StreamClusters()
    await call.write(discovery_pb2.DiscoveryRequest(node=NODE))  # no type_url on per-type
    first = await asyncio.wait_for(call.read(), 10)
    assert first.type_url == CLUSTER
    await call.write(sotw(CLUSTER, nonce=first.nonce, version=first.version_info))
    server.cache.set_snapshot(GROUP, snapshot({"a": [1], "b": [2], "c": [3]}))
    pushed = await asyncio.wait_for(call.read(), 10)
    assert [r.type_url for r in pushed.resources] == [CLUSTER] * 3
    call.cancel()


async def test_delta_ads_over_grpc(served: tuple[XdsServer, grpc.aio.Channel]) -> None:
    _, channel = served
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources()
    await call.write(
        discovery_pb2.DeltaDiscoveryRequest(
            node=NODE, type_url=ROUTE, resource_names_subscribe=["main"]
        )
    )
    response = await asyncio.wait_for(call.read(), 10)
    assert [r.name for r in response.resources] == ["main"]
    assert response.system_version_info == snapshot().type_version(ROUTE)
    call.cancel()


async def test_first_request_without_node_is_refused(
    served: tuple[XdsServer, grpc.aio.Channel],
) -> None:
    _, channel = served
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), 10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "node" in (info.value.details() or "")


@pytest.mark.parametrize("method", ["StreamAggregatedResources", "DeltaAggregatedResources"])
async def test_undecodable_request_is_refused_and_frees_the_stream(
    served: tuple[XdsServer, grpc.aio.Channel], method: str
) -> None:
    server, channel = served
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    await call.write(sotw(CLUSTER))  # a first good request: watch and status entry exist
    await asyncio.wait_for(call.read(), 10)
    assert server.cache.watcher_count(GROUP) == 1
    raw = channel.stream_stream(
        f"/envoy.service.discovery.v3.AggregatedDiscoveryService/{method}",
        request_serializer=lambda data: data,
        response_deserializer=lambda data: data,
    )()
    first = discovery_pb2.DeltaDiscoveryRequest(node=NODE, type_url=CLUSTER)
    await raw.write((first if "Delta" in method else sotw(CLUSTER)).SerializeToString())
    await asyncio.wait_for(raw.read(), 10)
    await until(lambda: server.cache.watcher_count(GROUP) == 2)
    await raw.write(b"\xff\xff\xff\xff garbage")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with asyncio.timeout(10):
            while True:
                await raw.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid" in (info.value.details() or "")
    await until(lambda: len(server.status.proxies()) == 1 and server.cache.watcher_count() == 1)
    call.cancel()
    await until(lambda: server.status.proxies() == [] and server.cache.watcher_count() == 0)


async def test_snapshots_pushed_while_the_stream_writes_its_answers(
    served: tuple[XdsServer, grpc.aio.Channel],
) -> None:
    """A new snapshot is written by the stream's writer task while the stream task writes the
    answers to ACKs: the two never write at once (gRPC would fail the call), nothing is lost and
    the client ends holding the last snapshot."""
    server, channel = served
    snapshots = [snapshot({"a": [9000 + i], "b": [9100 + i]}, tag=f"v{i}") for i in range(12)]
    wanted = {CLUSTER: [], ENDPOINT: ["a", "b"], LISTENER: [], ROUTE: ["main"]}
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    for type_url, names in wanted.items():
        await call.write(sotw(type_url, names))
    final = snapshots[-1]
    held: dict[str, str] = {}
    nonces: set[str] = set()
    pushed = 0
    while any(held.get(t) != final.type_version(t) for t in wanted):
        response = await asyncio.wait_for(call.read(), 10)
        assert response is not grpc.aio.EOF and response.nonce not in nonces
        nonces.add(response.nonce)
        if pushed < len(snapshots):  # a push lands between a response and its ACK
            server.cache.set_snapshot(GROUP, snapshots[pushed])
            pushed += 1
        held[response.type_url] = response.version_info
        await call.write(
            sotw(
                response.type_url,
                wanted[response.type_url],
                nonce=response.nonce,
                version=response.version_info,
            )
        )
    assert pushed == len(snapshots)
    await until(lambda: server.status.proxies()[0].acked.get(ROUTE) == final.type_version(ROUTE))
    call.cancel()
