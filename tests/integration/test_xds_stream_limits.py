"""Hostile xDS streams: names per request are capped with a clear gRPC status, and the memory a
stream holds (its share of the name-set cache) is bounded while it lives and freed when it ends.

Before, ten requests of 100,000 distinct names grew the server by hundreds of MiB that never
came back: the shared name-set cache kept up to 4,096 sets after their streams had closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.node import group_key
from controlplane.xds.resources import CLUSTER, ENDPOINT
from controlplane.xds.server import XdsServer
from controlplane.xds.stream import MAX_NAME_CHARS, MAX_NAMES_PER_TYPE, NAME_SETS
from tests.support.xds_replay import delta, snapshot, sotw

pytestmark = pytest.mark.integration

GROUP = group_key("eu-west-1")
NAMES = 20_000  # per request: under the cap, far more than any group has
REQUESTS = 10
STREAMS = 3


async def until(predicate: object, limit: float = 20.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, snapshot())
    server = XdsServer(cache)
    port = await server.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 16 << 20)]
    )
    try:
        yield channel
    finally:
        await channel.close(None)
        await server.stop(0)


async def refused(call: grpc.aio.StreamStreamCall) -> grpc.aio.AioRpcError:  # type: ignore[type-arg]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async with asyncio.timeout(10):
            while True:
                await call.read()
    return caught.value


async def test_too_many_names_in_one_request_end_the_stream_with_resource_exhausted(
    channel: grpc.aio.Channel,
) -> None:
    ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    call = ads.StreamAggregatedResources()
    await call.write(sotw(ENDPOINT, [f"e{i}" for i in range(MAX_NAMES_PER_TYPE + 1)]))
    error = await refused(call)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == (
        f"{MAX_NAMES_PER_TYPE + 1} resource names for {ENDPOINT};"
        f" the limit is {MAX_NAMES_PER_TYPE} per stream"
    )


async def test_delta_subscriptions_add_up_to_the_same_cap(channel: grpc.aio.Channel) -> None:
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources()
    half = MAX_NAMES_PER_TYPE // 2 + 1
    await call.write(delta(ENDPOINT, [f"a{i}" for i in range(half)]))
    await call.write(delta(ENDPOINT, [f"b{i}" for i in range(half)]))
    error = await refused(call)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"the limit is {MAX_NAMES_PER_TYPE} per stream" in (error.details() or "")


async def test_an_overlong_name_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    await call.write(sotw(CLUSTER, ["c" * (MAX_NAME_CHARS + 1)]))
    error = await refused(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"the limit is {MAX_NAME_CHARS}" in (error.details() or "")


async def test_name_sets_of_closed_hostile_streams_are_freed(channel: grpc.aio.Channel) -> None:
    baseline_names, baseline_sets = NAME_SETS.names, len(NAME_SETS)
    ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    for round_ in range(3):
        calls = [ads.StreamAggregatedResources() for _ in range(STREAMS)]
        for s, call in enumerate(calls):
            for r in range(REQUESTS):
                # the last request names one more: when every stream holds that one, every
                # request was applied
                count = NAMES + (1 if r == REQUESTS - 1 else 0)
                names = [f"r{round_}-s{s}-q{r}-{i}" for i in range(count)]
                await call.write(sotw(ENDPOINT, names))
        # while they live, each stream holds its current set only (the nine before were let go)
        await until(lambda: NAME_SETS.names == baseline_names + STREAMS * (NAMES + 1))
        assert len(NAME_SETS) == baseline_sets + STREAMS
        for call in calls:
            call.cancel()
        await until(lambda: (NAME_SETS.names, len(NAME_SETS)) == (baseline_names, baseline_sets))
