"""The stream task and its writer task never write at once, and write in order.

``_Stream`` writes the answers to requests from the stream task and a new snapshot's responses
from a short-lived writer task; gRPC allows one write in flight per call. A context whose
``write`` waits on a gate holds a write open while the other side produces a response."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.node import group_key
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER
from controlplane.xds.server import XdsServer, _Stream
from controlplane.xds.status import StatusRegistry
from tests.support.poll import until
from tests.support.xds_replay import snapshot, sotw

GROUP = group_key("eu-west-1")


class GatedContext:
    """The two calls ``_Stream`` makes on a grpc.aio context: ``read`` and ``write``."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[Any] = asyncio.Queue()
        self.gate = asyncio.Event()
        self.gate.set()
        self.written: list[discovery_pb2.DiscoveryResponse] = []
        self.writing = 0
        self.most_at_once = 0

    async def read(self) -> Any:
        return await self.requests.get()

    async def write(self, data: bytes) -> None:
        self.writing += 1
        self.most_at_once = max(self.most_at_once, self.writing)
        try:
            await self.gate.wait()
            self.written.append(discovery_pb2.DiscoveryResponse.FromString(data))
        finally:
            self.writing -= 1

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")

    def ack(self, response: discovery_pb2.DiscoveryResponse, names: list[str]) -> None:
        self.requests.put_nowait(
            sotw(response.type_url, names, nonce=response.nonce, version=response.version_info)
        )


def serving(cache: SnapshotCache) -> tuple[StatusRegistry, GatedContext, asyncio.Task[None]]:
    status = StatusRegistry()
    ctx = GatedContext()
    stream = _Stream(XdsServer(cache, status=status), ctx, delta=False, type_url=None)  # type: ignore[arg-type]
    return status, ctx, asyncio.create_task(stream.run())


def test_a_push_waits_for_the_answer_being_written() -> None:
    async def run() -> None:
        cache = SnapshotCache()
        cache.set_snapshot(GROUP, snapshot())
        status, ctx, task = serving(cache)
        ctx.requests.put_nowait(sotw(CLUSTER))
        ctx.requests.put_nowait(sotw(ENDPOINT, ["a", "b"]))
        await until(lambda: len(ctx.written) == 2)
        ctx.ack(ctx.written[0], [])
        ctx.ack(ctx.written[1], ["a", "b"])
        await until(lambda: len(status.proxies()[0].acked) == 2)

        # the stream task holds a write open (LDS); a push (CDS) must wait for it
        ctx.gate.clear()
        ctx.requests.put_nowait(sotw(LISTENER))
        await until(lambda: ctx.writing == 1)
        cache.set_snapshot(GROUP, snapshot({"a": [9001], "c": [9003]}, tag="v2"))
        await until(lambda: status.responses_total[CLUSTER] == 2)  # emitted, not written
        assert ctx.writing == 1
        ctx.gate.set()
        await until(lambda: len(ctx.written) == 4)
        assert [r.type_url for r in ctx.written[2:]] == [LISTENER, CLUSTER]

        assert ctx.most_at_once == 1
        ctx.requests.put_nowait(grpc.aio.EOF)  # type: ignore[attr-defined]
        await task
        assert status.proxies() == [] and cache.watcher_count() == 0

    asyncio.run(run())


def test_an_answer_waits_for_the_push_being_written() -> None:
    async def run() -> None:
        cache = SnapshotCache()
        cache.set_snapshot(GROUP, snapshot())
        status, ctx, task = serving(cache)
        ctx.requests.put_nowait(sotw(ENDPOINT, ["a", "b"]))
        await until(lambda: len(ctx.written) == 1)
        ctx.ack(ctx.written[0], ["a", "b"])
        await until(lambda: ENDPOINT in status.proxies()[0].acked)

        ctx.gate.clear()
        cache.set_snapshot(GROUP, snapshot({"a": [9011], "b": [9012]}, tag="v2"))
        await until(lambda: ctx.writing == 1)  # the writer task, with the new endpoints
        ctx.requests.put_nowait(sotw(CLUSTER))  # CDS goes before EDS: answered at once
        await until(lambda: status.responses_total[CLUSTER] == 1)  # emitted, not written
        assert ctx.writing == 1
        ctx.gate.set()
        await until(lambda: len(ctx.written) == 3)
        assert [r.type_url for r in ctx.written] == [ENDPOINT, ENDPOINT, CLUSTER]
        assert ctx.most_at_once == 1
        ctx.requests.put_nowait(grpc.aio.EOF)  # type: ignore[attr-defined]
        await task
        assert status.proxies() == [] and cache.watcher_count() == 0

    asyncio.run(run())


def test_a_snapshot_the_stream_cannot_apply_ends_the_stream() -> None:
    """A bug while applying a pushed snapshot ends the stream (the proxy reconnects from a clean
    state) instead of leaving it on a state half applied; the stream's bookkeeping is undone."""

    def broken(_: object) -> object:
        raise RuntimeError("bug")

    async def run() -> None:
        cache = SnapshotCache()
        cache.set_snapshot(GROUP, snapshot())
        status, ctx = StatusRegistry(), GatedContext()
        stream = _Stream(XdsServer(cache, status=status), ctx, delta=False, type_url=None)  # type: ignore[arg-type]
        task = asyncio.create_task(stream.run())
        ctx.requests.put_nowait(sotw(ENDPOINT, ["a", "b"]))
        await until(lambda: len(ctx.written) == 1)
        assert len(status.proxies()) == 1
        stream.machine.on_snapshot = broken  # type: ignore[method-assign, assignment]
        cache.set_snapshot(GROUP, snapshot({"a": [9011]}, tag="v2"))
        await asyncio.wait({task}, timeout=10)
        assert task.cancelled()
        assert status.proxies() == [] and cache.watcher_count() == 0

    asyncio.run(run())
