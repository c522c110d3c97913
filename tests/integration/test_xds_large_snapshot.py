"""A 10,000-service RouteConfiguration (over 1.5 MB) goes through the xDS server with its real
gRPC options (GRPC_SERVER_OPTIONS: message sizes, HPACK tables, channelz), is ACKed, and a
change of it follows on the same stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.node import group_key
from controlplane.xds.resources import ROUTE
from controlplane.xds.server import XdsServer
from controlplane.xds.snapshot import Snapshot
from tests.support.xds_replay import NODE, sotw
from tests.support.xds_resources import make_resources

pytestmark = pytest.mark.integration

GROUP = group_key(NODE.cluster)
SERVICES = 10_000
LARGE = 1_500_000  # bytes of one RouteConfiguration


def large_snapshot(tag: str) -> Snapshot:
    resources = make_resources(8080, {"a": [9001]}, route_to="a", tag=tag)
    route = route_pb2.RouteConfiguration(name="main")
    for i in range(SERVICES):
        route.virtual_hosts.append(
            route_components_pb2.VirtualHost(
                name=f"svc-{i:05d}.{tag}",
                domains=[
                    f"svc-{i:05d}.example.internal",
                    f"svc-{i:05d}.example.internal:*",
                    f"svc-{i:05d}.eu-west-1.example.internal",
                    f"svc-{i:05d}.eu-west-1.example.internal:*",
                ],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix=f"/api/v1/svc-{i:05d}/"),
                        route=route_components_pb2.RouteAction(
                            cluster="a", timeout={"seconds": 15}
                        ),
                    )
                ],
            )
        )
    resources[ROUTE]["main"] = route
    return Snapshot.build(resources)


async def test_a_route_configuration_over_1_5_mb_is_served_acked_and_updated() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, large_snapshot("v1"))
    server = XdsServer(cache)
    port = await server.start("127.0.0.1:0")
    requests: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()

    async def send() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            yield await requests.get()

    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    try:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
            send()
        )
        requests.put_nowait(sotw(ROUTE, ["main"]))
        async with asyncio.timeout(60):
            first = await call.read()
        assert first.ByteSize() > LARGE
        served = route_pb2.RouteConfiguration.FromString(first.resources[0].value)
        assert len(served.virtual_hosts) == SERVICES
        assert served.virtual_hosts[0].name == "svc-00000.v1"

        requests.put_nowait(sotw(ROUTE, ["main"], nonce=first.nonce, version=first.version_info))
        cache.set_snapshot(GROUP, large_snapshot("v2"))
        async with asyncio.timeout(60):
            second = await call.read()
        assert second.ByteSize() > LARGE and second.version_info != first.version_info
        updated = route_pb2.RouteConfiguration.FromString(second.resources[0].value)
        assert updated.virtual_hosts[SERVICES - 1].name == f"svc-{SERVICES - 1:05d}.v2"
        call.cancel()
    finally:
        await channel.close(None)
        await server.stop(0)
