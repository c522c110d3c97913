"""Tiny HTTP backends for the demo: each says which service, cluster and version answered.

asyncio, HTTP/1.1 with keep-alive, no dependencies. Every response carries ``x-ubiq-service``,
``x-ubiq-cluster`` and ``x-ubiq-version`` headers and a one-line body saying the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from controlplane.errors import ListenError

MAX_HEADER_BYTES = 16 * 1024


@dataclass
class DemoBackend:
    service: str
    cluster: str
    version: str
    host: str
    port: int
    requests: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)
    _connections: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._connection, self.host, self.port)
        except OSError as exc:  # the example's fixed addresses: another demo may hold them
            raise ListenError(
                f"demo backend {self.service} ({self.cluster}) {self.host}:{self.port}:"
                f" cannot listen: {exc.strerror or exc} (is another `ubiq demo` running?)"
            ) from None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):  # keep-alive connections outlive close()
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                    return
                if len(head) > MAX_HEADER_BYTES:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path = [*lines[0].split(" "), "", ""][:2]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(min(length, 1 << 20))
                if path != "/healthz":
                    self.requests += 1
                body = (
                    f"{self.service} {self.version} in {self.cluster}: {method} {path}\n".encode()
                )
                writer.write(
                    b"HTTP/1.1 200 OK\r\n"
                    b"content-type: text/plain\r\n"
                    + f"content-length: {len(body)}\r\n".encode()
                    + f"x-ubiq-service: {self.service}\r\n".encode()
                    + f"x-ubiq-cluster: {self.cluster}\r\n".encode()
                    + f"x-ubiq-version: {self.version}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, OSError):
            return
        except asyncio.CancelledError:
            # stop() cancels open keep-alive connections; ending normally here keeps Python
            # 3.11's stream callback from logging a traceback for each cancelled task
            return
        finally:
            writer.close()
