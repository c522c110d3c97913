"""Real gRPC backends on loopback (grpc.aio, one event loop in a thread) that say who served a call.

Each serves ``/demo.Echo/Echo`` (unary, raw bytes, no protobuf): the reply payload is
``<name>|<request bytes>`` and the initial metadata carries ``x-backend: <name>``. Knobs,
changeable while running: ``fail_every`` (every Nth call ends with UNAVAILABLE, before any
message or metadata is sent, i.e. as a trailers-only response), ``delay`` (seconds to wait
before answering). ``count`` counts calls and
``seen_metadata`` keeps the invocation metadata of the last call.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import grpc

from tests.support.loop import loop_thread

SERVICE = "demo.Echo"
METHOD = "Echo"
PATH = f"/{SERVICE}/{METHOD}"


class GrpcBackend:
    def __init__(self, name: str, loop: asyncio.AbstractEventLoop, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.fail_every = 0
        self.delay = 0.0
        self.count = 0
        self.seen_metadata: dict[str, str] = {}
        self._lock = threading.Lock()
        self._loop = loop
        self._server: grpc.aio.Server | None = None
        self.port = 0

    def reset(self) -> None:
        with self._lock:
            self.fail_every, self.delay, self.count, self.seen_metadata = 0, 0.0, 0, {}

    async def _echo(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        with self._lock:
            self.count += 1
            fail = bool(self.fail_every) and self.count % self.fail_every == 0
            self.seen_metadata = {k: str(v) for k, v in context.invocation_metadata() or ()}
        if fail:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.name} says try again")
        if self.delay:
            await asyncio.sleep(self.delay)
        await context.send_initial_metadata((("x-backend", self.name),))
        return self.name.encode() + b"|" + request

    async def start(self) -> int:
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(self._echo)}
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        self.port = server.add_insecure_port(f"{self.host}:0")
        await server.start()
        self._server = server
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)


@contextlib.contextmanager
def grpc_backends(*names: str) -> Iterator[dict[str, GrpcBackend]]:
    """Start one GrpcBackend per name on a shared event loop in a thread; stop them all after."""
    started: dict[str, GrpcBackend] = {}
    with loop_thread("grpc-backends") as lt:
        try:
            for name in names:
                backend = GrpcBackend(name, lt.loop)
                lt.run(backend.start())
                started[name] = backend
            yield started
        finally:
            for backend in started.values():
                lt.run(backend.stop())


def echo(
    channel: grpc.Channel,
    payload: bytes = b"hi",
    *,
    metadata: tuple[tuple[str, str], ...] = (),
    timeout: float = 10.0,
) -> tuple[bytes, dict[str, str]]:
    """One unary call; returns (reply payload, initial metadata). Raises grpc.RpcError."""
    call = channel.unary_unary(PATH, request_serializer=None, response_deserializer=None)
    reply, rpc = call.with_call(payload, metadata=metadata, timeout=timeout)
    initial = {k: str(v) for k, v in rpc.initial_metadata() or ()}
    return bytes(reply), initial


def call_loop(target: str, seconds: float, pause: float = 0.05) -> None:
    """Call ``target`` until ``seconds`` pass, one line per call: ``ok <backend>`` or ``err <code>``.

    Run as ``python -m tests.support.grpc_backends TARGET SECONDS`` in a subprocess, so that
    GRPC_XDS_BOOTSTRAP(_CONFIG) is in the environment before grpc initialises its xDS client.
    """
    import time

    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(target) as channel:
        while time.monotonic() < deadline:
            try:
                _, metadata = echo(channel, timeout=2.0)
                line = f"ok {metadata.get('x-backend', '?')}"
            except grpc.RpcError as exc:
                line = f"err {exc.code().name} {exc.details()}"
            print(line, flush=True)
            time.sleep(pause)


if __name__ == "__main__":
    import sys

    call_loop(sys.argv[1], float(sys.argv[2]))
