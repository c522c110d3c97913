"""A real xDS server under nonsense streams: ADS and per-type, SotW and Delta, with random nodes,
type URLs, names, versions, nonces and error details, plus bytes that are no protobuf at all.
Each stream gets protocol-correct responses or ends with a clear INVALID_ARGUMENT /
RESOURCE_EXHAUSTED; afterwards the server holds no stream state and still serves an Envoy-style
client."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.node import group_key
from controlplane.xds.resources import CLUSTER, PUSH_ORDER
from controlplane.xds.server import XdsServer
from controlplane.xds.status import StatusRegistry
from controlplane.xds.stream import MAX_NAME_CHARS, NAME_SETS
from tests.support.poll import until
from tests.support.xds_replay import NODE, snapshot, sotw

pytestmark = pytest.mark.integration

STREAMS = 40
ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
PER_TYPE = [
    "/envoy.service.cluster.v3.ClusterDiscoveryService/",
    "/envoy.service.endpoint.v3.EndpointDiscoveryService/",
]
TYPE_URLS = [*PUSH_ORDER, "", "type.googleapis.com/nonsense.v9.Thing", "\u2603" * 40, "x" * 2000]


@pytest.fixture
async def served() -> AsyncIterator[tuple[grpc.aio.Channel, XdsServer, int]]:
    cache = SnapshotCache()
    cache.set_snapshot(group_key("eu-west-1"), snapshot())
    server = XdsServer(cache)
    port = await server.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, server, port
    finally:
        await channel.close(None)
        await server.stop(0)


def text(rng: random.Random, longest: int = 30) -> str:
    pool = [
        "",
        "*",
        "a",
        "b",
        "main",
        "\x00",
        "\u202e",
        "%s%n",
        "../../etc",
        "n" * (MAX_NAME_CHARS + 1),
    ]
    if rng.random() < 0.5:
        return rng.choice(pool)
    return "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randint(0, longest)))


def node(rng: random.Random) -> base_pb2.Node:
    if rng.random() < 0.3:
        return NODE
    metadata = struct_pb2.Struct()
    metadata.update({"ubiq.cluster": rng.choice([text(rng), 7, None, ["x"]]), text(rng): text(rng)})
    return base_pb2.Node(id=text(rng), cluster=text(rng), metadata=metadata)


def request(rng: random.Random, delta: bool, first: bool, nonces: list[str]) -> Any:
    nonce = rng.choice([*nonces[-2:], "", text(rng, 10)]) if rng.random() < 0.8 else ""
    error = (
        {"error_detail": {"code": rng.randrange(20), "message": text(rng)}}
        if rng.random() < 0.2
        else {}
    )
    names = [text(rng) for _ in range(rng.randint(0, 4))]
    with_node = {"node": node(rng)} if first or rng.random() < 0.2 else {}
    if delta:
        return discovery_pb2.DeltaDiscoveryRequest(
            type_url=rng.choice(TYPE_URLS),
            resource_names_subscribe=names,
            resource_names_unsubscribe=[text(rng) for _ in range(rng.randint(0, 2))],
            initial_resource_versions={text(rng): text(rng) for _ in range(rng.randint(0, 2))},
            response_nonce=nonce,
            **with_node,
            **error,
        )
    return discovery_pb2.DiscoveryRequest(
        type_url=rng.choice(TYPE_URLS),
        resource_names=names,
        version_info=text(rng, 10),
        response_nonce=nonce,
        **with_node,
        **error,
    )


def nonsense_stream(port: int, rng: random.Random) -> str:
    """One stream of random requests; returns how it ended (the status code name).

    The sync client: grpc's asyncio client reports its own INTERNAL instead of the server's
    status when a write races the server ending the stream (grpc/grpc#36066)."""
    delta = rng.random() < 0.5
    service = rng.choice([ADS, ADS, *PER_TYPE])
    kind = "Aggregated" if service == ADS else "Cluster" if "cluster" in service else "Endpoint"
    method = (
        service
        + {
            ("Aggregated", True): "DeltaAggregatedResources",
            ("Aggregated", False): "StreamAggregatedResources",
            ("Cluster", True): "DeltaClusters",
            ("Cluster", False): "StreamClusters",
            ("Endpoint", True): "DeltaEndpoints",
            ("Endpoint", False): "StreamEndpoints",
        }[(kind, delta)]
    )
    response_type = (
        discovery_pb2.DeltaDiscoveryResponse if delta else discovery_pb2.DiscoveryResponse
    )
    garbage = rng.random() < 0.15
    nonces: list[str] = []
    count = rng.randint(1, 12)

    def requests() -> Iterator[Any]:
        for i in range(count):
            yield (
                rng.randbytes(rng.randint(1, 64))
                if garbage
                else request(rng, delta, i == 0, nonces)
            )

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(
            method,
            request_serializer=(lambda b: b) if garbage else (lambda m: m.SerializeToString()),
            response_deserializer=response_type.FromString,
        )(requests(), timeout=20)
        try:
            for response in call:
                assert response.type_url in PUSH_ORDER and response.nonce
                nonces.append(response.nonce)
        except grpc.RpcError:
            pass  # the server ended the stream; its status is checked below
        code = call.code()
        if code != grpc.StatusCode.OK:
            assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), (
                code,
                call.details(),
                method,
            )
            assert call.details()
        return str(code.name)


async def test_nonsense_streams_get_clear_errors_or_correct_replies(
    served: tuple[grpc.aio.Channel, XdsServer, int],
) -> None:
    channel, server, port = served
    before = NAME_SETS.names
    rng = random.Random(14)
    endings = await asyncio.gather(
        *(
            asyncio.to_thread(nonsense_stream, port, random.Random(rng.random()))
            for _ in range(STREAMS)
        )
    )
    assert "OK" in endings and "INVALID_ARGUMENT" in endings
    status = server.status
    assert isinstance(status, StatusRegistry)
    await until(lambda: not status._proxies, what="every stream's state released")
    assert NAME_SETS.names == before
    # and an Envoy-style client is served
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    await call.write(sotw(CLUSTER))
    async with asyncio.timeout(10):
        response = await call.read()
    assert response.type_url == CLUSTER and len(response.resources) == 2
    call.cancel()
