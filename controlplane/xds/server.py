"""grpc.aio servicers for ADS and the per-type xDS services: messages in, messages out.

All protocol decisions are made by ``XdsStream``; this module reads requests, watches the
node's group in a ``SnapshotSource`` (the SnapshotCache), writes the (pre-encoded) responses and
tells ``StreamCallbacks`` (the StatusRegistry) what happened, the way go-control-plane's server
takes a cache and callbacks. Responses are written as bytes built from each snapshot's shared
serialization, so the response serializer is the identity.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import grpc
import structlog
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError

from controlplane.errors import XdsRequestError
from controlplane.xds import resources as rs
from controlplane.xds.events import Event, Nacked, Response, Step
from controlplane.xds.node import NodeGrouper, group_by_cluster
from controlplane.xds.peer import peer_spiffe_ids, refusal
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import StatusRegistry
from controlplane.xds.stream import XdsStream
from controlplane.xds.tls import ReloadingTls


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class SnapshotSource(Protocol):
    """Where streams get their group's snapshot, and hear of new ones."""

    def get(self, group: str) -> Snapshot | None: ...

    def watch(self, group: str, callback: Callable[[Snapshot], None]) -> Cancellable: ...

    def groups(self) -> list[str]: ...


class StreamCallbacks(Protocol):
    """What the server reports about each stream (StatusRegistry keeps it for the API)."""

    def connect(self, stream_id: int, node: base_pb2.Node, group: str, mode: str) -> None: ...

    def disconnect(self, stream_id: int) -> None: ...

    def sent(self, stream_id: int, response: Response) -> None: ...

    def record(self, stream_id: int, event: Event) -> None: ...


log = structlog.get_logger(__name__)

# (service, SotW method or None, Delta method, type_url or None for ADS)
SERVICES: tuple[tuple[str, str | None, str, str | None], ...] = (
    ("envoy.service.discovery.v3.AggregatedDiscoveryService", "StreamAggregatedResources", "DeltaAggregatedResources", None),
    ("envoy.service.cluster.v3.ClusterDiscoveryService", "StreamClusters", "DeltaClusters", rs.CLUSTER),
    ("envoy.service.endpoint.v3.EndpointDiscoveryService", "StreamEndpoints", "DeltaEndpoints", rs.ENDPOINT),
    ("envoy.service.listener.v3.ListenerDiscoveryService", "StreamListeners", "DeltaListeners", rs.LISTENER),
    ("envoy.service.route.v3.RouteDiscoveryService", "StreamRoutes", "DeltaRoutes", rs.ROUTE),
    ("envoy.service.secret.v3.SecretDiscoveryService", "StreamSecrets", "DeltaSecrets", rs.SECRET),
    # VHDS is Delta only: the service has no SotW method
    ("envoy.service.route.v3.VirtualHostDiscoveryService", None, "DeltaVirtualHosts", rs.VIRTUAL_HOST),
)  # fmt: skip

_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # context.read(): the client is done
MAX_REQUEST_BYTES = 8 * 1024 * 1024  # one (Delta)DiscoveryRequest; 50,000 names fit easily
MAX_STREAMS = 10_000  # concurrent xDS streams (RPCs) per server; more get RESOURCE_EXHAUSTED

# Every option of the xDS gRPC server, written out (docs/xds.md "Memory and work per stream").
GRPC_SERVER_OPTIONS: dict[str, int | str] = {
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    "grpc.max_receive_message_length": MAX_REQUEST_BYTES,
    "grpc.keepalive_time_ms": 30_000,
    "grpc.http2.max_pings_without_data": 0,
    # One xDS stream per connection sends its headers once: a dynamic HPACK table per
    # connection and direction buys nothing. With channelz off, no per-socket and per-call
    # channelz nodes (Ubiq serves no channelz). ~1 KiB less per connected client, measured.
    "grpc.http2.hpack_table_size.decoder": 0,
    "grpc.http2.hpack_table_size.encoder": 0,
    "grpc.enable_channelz": 0,
    # gRPC sets SO_REUSEPORT by default: a second `ubiq serve` on the same address would start
    # cleanly and take half the Envoys. Bind exclusively.
    "grpc.so_reuseport": 0,
}


def _identity(data: bytes) -> bytes:
    return data


Handler = Callable[[AsyncIterator[Any], grpc.aio.ServicerContext[Any, bytes]], Awaitable[None]]


class XdsServer:
    def __init__(
        self,
        cache: SnapshotSource,
        grouper: NodeGrouper = group_by_cluster,
        status: StreamCallbacks | None = None,
        tls: ReloadingTls | None = None,
    ) -> None:
        """``tls``: serve over TLS, require a client certificate, and give each stream only the
        configuration of the node its certificate names (docs/security.md)."""
        self.cache = cache
        self.tls = tls
        self.grouper = grouper
        self.status: StreamCallbacks = status if status is not None else StatusRegistry()
        self._ids = itertools.count(1)
        self._server: grpc.aio.Server | None = None
        #: (node id, group) -> its ADS stream, which that node's VHDS stream waits on
        #: (``_Stream.gated``)
        self._ads: dict[tuple[str, str], _Stream] = {}

    def add_to_server(self, server: grpc.aio.Server) -> None:
        handlers = []
        for service, sotw, delta, type_url in SERVICES:
            methods = {
                delta: grpc.stream_stream_rpc_method_handler(
                    self._handler(delta=True, type_url=type_url),
                    request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                    response_serializer=_identity,
                ),
            }
            if sotw is not None:
                methods[sotw] = grpc.stream_stream_rpc_method_handler(
                    self._handler(delta=False, type_url=type_url),
                    request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                    response_serializer=_identity,
                )
            handlers.append(grpc.method_handlers_generic_handler(service, methods))
        server.add_generic_rpc_handlers(handlers)

    async def start(self, address: str, options: Mapping[str, int | str] | None = None) -> int:
        """Listen on ``address`` (``host:port``, port 0 for any); returns the bound port.
        ``options``: gRPC server options over ``GRPC_SERVER_OPTIONS`` (benchmarks)."""
        server = grpc.aio.server(
            maximum_concurrent_rpcs=MAX_STREAMS,
            options=list({**GRPC_SERVER_OPTIONS, **(options or {})}.items()),
        )
        self.add_to_server(server)
        _check_free(address)
        try:
            if self.tls is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self.tls.credentials())
        except RuntimeError as exc:  # grpc: "Failed to bind to address ..."
            raise OSError(errno.EADDRINUSE, "address in use (or not available)") from exc
        await server.start()
        self._server = server
        log.info("xds.listening", address=address, port=port, tls=self.tls is not None)
        return port

    async def stop(self, grace: float | None = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    def _handler(self, *, delta: bool, type_url: str | None) -> Handler:
        async def handle(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, bytes]
        ) -> None:
            await self._serve(requests, context, delta=delta, type_url=type_url)

        return handle

    async def _serve(
        self,
        requests: AsyncIterator[Any],
        context: grpc.aio.ServicerContext[Any, bytes],
        *,
        delta: bool,
        type_url: str | None,
    ) -> None:
        del requests  # read with context.read(): no async generator per stream
        await _Stream(self, context, delta=delta, type_url=type_url).run()

    async def _authorize(
        self,
        node: base_pb2.Node,
        context: grpc.aio.ServicerContext[Any, bytes],
        stream_id: int,
    ) -> None:
        """Abort with PERMISSION_DENIED unless the client's certificate names this node."""
        assert self.tls is not None
        ids = peer_spiffe_ids(context.auth_context())
        reason = refusal(node, ids, self.tls.trust_domains)
        if reason is not None:
            log.warning(
                "xds.permission_denied",
                stream=stream_id,
                node=node.id[:200],
                peer=ids[:2],
                reason=reason,
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)


class _Stream:
    """One xDS stream, served by one task: it reads and answers requests; a new snapshot is
    applied by a loop callback and its responses written by a short-lived writer task, so a
    stream at rest holds one task and no read-ahead (docs/xds.md "Memory and work per stream").
    A class with slots rather than closures: ~1 KiB less per stream."""

    __slots__ = (
        "closed",
        "context",
        "delta",
        "group",
        "loop",
        "machine",
        "outbox",
        "server",
        "snapshot_pending",
        "stream_id",
        "task",
        "waiters",
        "watch",
        "writer",
        "writing",
    )

    def __init__(
        self,
        server: XdsServer,
        context: grpc.aio.ServicerContext[Any, bytes],
        *,
        delta: bool,
        type_url: str | None,
    ) -> None:
        self.server = server
        self.context = context
        self.delta = delta
        self.stream_id = next(server._ids)
        self.machine = XdsStream(delta=delta, type_url=type_url)
        self.loop = asyncio.get_running_loop()
        self.outbox: list[bytes] = []  # encoded responses in order; one in flight per type
        self.writing = False  # one drain() at a time: the stream task's or the writer task's
        self.writer: asyncio.Task[None] | None = None
        self.snapshot_pending = False
        self.closed = False
        self.watch: Cancellable | None = None
        self.group = ""
        self.task: asyncio.Task[Any] | None = None
        self.waiters: set[_Stream] | None = None  # VHDS streams waiting on this ADS stream

    async def run(self) -> None:
        context, machine = self.context, self.machine
        self.task = asyncio.current_task()
        try:
            while True:
                try:
                    request = await context.read()
                except DecodeError as exc:  # grpc hands the request_deserializer's error on
                    reason = str(exc) or type(exc).__name__
                    await self._refuse(
                        XdsRequestError(
                            f"request is not a valid {_request_name(self.delta)}: {reason}"
                        )
                    )
                    return  # abort raises; never reached
                if request is _EOF:
                    return
                try:
                    step = machine.on_request(request)
                except XdsRequestError as refused:
                    await self._refuse(refused)
                    return  # abort raises; never reached
                request = None  # hold no request while waiting for the next one
                if self.watch is None:
                    step = _merge(step, await self._start(machine))
                self._emit(step)
                self._wake_waiters()
                if self._claim_drain():
                    await self._drain()
        finally:
            # per-stream state first: nothing below may skip it
            self.closed = True
            if self.watch is not None:
                self.watch.cancel()
            machine.close()
            node = machine.node
            if node is not None and self.server._ads.get((node.id, self.group)) is self:
                del self.server._ads[node.id, self.group]
            self._wake_waiters()
            self.server.status.disconnect(self.stream_id)
            if self.writer is not None:
                self.writer.cancel()
                await asyncio.wait({self.writer})  # never raises its error nor eats our cancel

    async def _refuse(self, error: XdsRequestError) -> None:
        log.warning("xds.bad_request", stream=self.stream_id, group=self.group, error=str(error))
        await self.context.abort(grpc.StatusCode[error.status], str(error))

    async def _start(self, machine: XdsStream) -> Step:
        """The first request: check the node (and its certificate), watch its group."""
        server = self.server
        if machine.node is None:
            await self._refuse(XdsRequestError("the first request on a stream must carry node"))
        assert machine.node is not None
        if server.tls is not None:
            await server._authorize(machine.node, self.context, self.stream_id)
        self.group = server.grouper(machine.node)
        server.status.connect(self.stream_id, machine.node, self.group, _mode(self.delta))
        if machine.fixed_type is None:
            server._ads[machine.node.id, self.group] = self
        self.watch = server.cache.watch(self.group, self._on_snapshot)
        current = server.cache.get(self.group)
        if current is not None:
            if self.gated(current):
                return Step()
            return machine.on_snapshot(current)
        log.warning(
            "xds.unknown_group",
            node=machine.node.id,
            group=self.group,
            known=server.cache.groups()[:20],
            hint="no configuration for this group yet: is the node's"
            " ubiq.cluster (or node.cluster) a Cluster in the policy?",
        )
        return Step()

    def gated(self, snapshot: Snapshot) -> bool:
        """A VHDS stream holds ``snapshot`` back while the node's ADS stream has not yet given
        Envoy that snapshot's clusters and endpoints (``XdsStream.holds``): VHDS has a stream of
        its own, so without this a virtual host could route to a cluster Envoy does not have
        yet. It is woken when that ADS stream moves on or ends."""
        node = self.machine.node
        if self.machine.fixed_type != rs.VIRTUAL_HOST or node is None:
            return False
        ads = self.server._ads.get((node.id, self.group))
        if ads is None or ads.closed or ads.machine.holds(snapshot):
            return False
        if ads.waiters is None:
            ads.waiters = set()
        ads.waiters.add(self)
        return True

    def _wake_waiters(self) -> None:
        waiters, self.waiters = self.waiters, None
        for waiter in waiters or ():
            waiter._on_snapshot(None)

    def _emit(self, step: Step) -> None:
        status = self.server.status
        for event in step.events:
            status.record(self.stream_id, event)
            if isinstance(event, Nacked):
                node = self.machine.node
                log.warning(
                    "xds.nack",
                    group=self.group,
                    node=node.id if node else "",
                    type=rs.short_name(event.type_url),
                    version=event.version_info,
                    message=event.message,
                )
        for response in step.responses:
            status.sent(self.stream_id, response)
            self.outbox.append(response.encode())

    def _claim_drain(self) -> bool:
        if self.outbox and not self.writing:
            self.writing = True
            return True
        return False

    async def _drain(self) -> None:
        try:
            while self.outbox:
                await self.context.write(self.outbox.pop(0))
        finally:
            self.writing = False

    async def _write_in_background(self) -> None:
        try:
            await self._drain()
        except (asyncio.CancelledError, Exception):  # the stream ended under the write
            self.outbox.clear()

    def _on_snapshot(self, _: Snapshot | None) -> None:
        if not self.snapshot_pending:  # coalesce: the stream always takes the newest one
            self.snapshot_pending = True
            self.loop.call_soon(self._apply_snapshot)

    def _apply_snapshot(self) -> None:
        self.snapshot_pending = False
        current = self.server.cache.get(self.group)
        if self.closed or current is None or current is self.machine.snapshot:
            return
        if self.gated(current):
            return
        try:
            self._emit(self.machine.on_snapshot(current))
            self._wake_waiters()
        except Exception:
            # a bug in the state machine: end the stream (the proxy reconnects and starts from
            # a clean state) rather than go on from a state half applied
            log.exception("xds.stream.failed", stream=self.stream_id, group=self.group)
            if self.task is not None:
                self.task.cancel()
            return
        if self._claim_drain():
            self.writer = self.loop.create_task(self._write_in_background())


def _check_free(address: str) -> None:
    """Raise OSError (EADDRINUSE) when ``address`` is taken, before gRPC tries it: gRPC's own
    failure is a C-core log line on stderr and a bare RuntimeError."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or int(port) == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, int(port)), family=family):
            pass
    except OSError as exc:
        if exc.errno is None:
            raise
        raise OSError(exc.errno, os.strerror(exc.errno)) from None


def _request_name(delta: bool) -> str:
    return "DeltaDiscoveryRequest" if delta else "DiscoveryRequest"


def _mode(delta: bool) -> str:
    return "delta" if delta else "sotw"


def _merge(a: Step, b: Step) -> Step:
    return Step(a.responses + b.responses, a.events + b.events)
