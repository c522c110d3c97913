"""The GTM's DNS listeners: asyncio UDP and TCP on IPv4 and IPv6; they only move bytes.

Every query goes to the pure ``answer()`` with the table current at that moment; the table is
replaced by one attribute assignment (``swap_table``), so a query sees the old or the new table,
never a mix. TCP follows RFC 7766: 2-byte length framing, several (pipelined) queries per
connection answered in order, and reading paused while the peer does not read our answers.

TCP resists slow clients: a connection is closed when it is idle (no message) for
``tcp_idle_timeout``, and a message must arrive whole within ``tcp_message_timeout`` of its first
byte (Knot's ``tcp-io-timeout``), so trickling a byte at a time buys nothing. One source may hold
``max_tcp_per_source`` connections (more are refused); when ``max_tcp_connections`` are open, a
newcomer is accepted and the connection that has been quiet longest (its last whole message or
answer is the oldest) is closed to make room, so holders cannot lock other clients out.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any, cast

import structlog

from controlplane.gtm.dns.answer import Client, Transfer, answer
from controlplane.gtm.dns.metrics import DnsMetrics, Tally, tally
from controlplane.gtm.dns.packet_cache import PacketCache
from controlplane.gtm.dns.rrl import ResponseRateLimiter
from controlplane.gtm.dns.table import AnswerTable

log = structlog.get_logger(__name__)

DEFAULT_LISTEN = (("127.0.0.1", 5353), ("::1", 5353))


class TcpFramer:
    """DNS-over-TCP framing (RFC 1035 4.2.2): feed received bytes, get whole messages back."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        messages: list[bytes] = []
        i, n = 0, len(buf)
        while n - i >= 2:
            length = (buf[i] << 8) | buf[i + 1]
            if n - i - 2 < length:
                break
            messages.append(bytes(buf[i + 2 : i + 2 + length]))
            i += 2 + length
        if i:
            del buf[:i]
        return messages

    @property
    def pending(self) -> int:
        return len(self._buf)


def frame(message: bytes) -> bytes:
    return len(message).to_bytes(2) + message


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """The one UDP path, in the main process (``--dns-workers 0``) and in every DNS worker:
        per-query hooks such as response-rate limiting belong here, their settings in
        DnsServer's options (which ``WorkerConfig.server_options`` carries to the workers)."""
        server = self._server
        start = perf_counter()
        host = addr[0]
        table = server.table
        cache = server.packet_cache
        entry = cache.lookup(data, host, table)
        if entry is not None:
            response: bytes | None = data[:2] + entry[0]
            counted: Tally | None = entry[1]
        else:
            try:
                response = answer(data, table, Client(host))
            except Exception:
                log.exception("dns.answer_failed", transport="udp", client=host)
                response = None
            counted = None
            if response is not None:
                counted = tally("udp", response)
                cache.put(data, host, table, response, counted)
        rrl = server.rrl
        if response is not None and rrl is not None:
            sent = rrl.filter(response, host)
            if sent is not response:  # slipped (truncated) or dropped: count what is sent
                response, counted = sent, None
        if counted is None:
            server.metrics.observe("udp", response, perf_counter() - start)
        else:
            server.metrics.count(counted, perf_counter() - start)
        if response is not None and self._transport is not None:
            self._transport.sendto(response, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("dns.udp_error", error=str(exc))


class _TcpProtocol(asyncio.Protocol):
    """DNS over TCP; also over TLS (``transport`` "tls"), where asyncio decrypts beneath."""

    def __init__(self, server: DnsServer, transport: str = "tcp") -> None:
        self._server = server
        self._kind = transport
        self._framer = TcpFramer()
        self._transport: asyncio.Transport | None = None
        self._client = Client("", True)
        self._source = ""
        self.last = 0.0  # when the last whole message arrived (or the connection opened)
        self._started = 0.0  # when the first byte of the message being received arrived
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        server = self._server
        peer = transport.get_extra_info("peername")
        self._source = peer[0] if peer else ""
        if not server._admit(self._source):
            server.metrics.tcp_rejected += 1
            transport.abort()
            return
        self._transport = transport
        server._add(self)
        self._client = Client(self._source, True)
        loop = asyncio.get_running_loop()
        self.last = loop.time()
        self._timer = loop.call_later(server.tcp_idle_timeout, self._check_idle)

    @property
    def source(self) -> str:
        return self._source

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        server = self._server
        loop = asyncio.get_running_loop()
        now = loop.time()
        was_partial = self._framer.pending > 0
        messages = self._framer.feed(data)
        if messages:
            self.last = now
        if self._framer.pending and (messages or not was_partial):
            self._started = now  # a new message began: its whole-message clock starts
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_later(server.tcp_message_timeout, self._check_idle)
        out: list[bytes] = []
        for message in messages:
            start = perf_counter()
            try:
                response = answer(message, server.table, self._client)
            except Exception:
                log.exception("dns.answer_failed", transport=self._kind, client=self._client.host)
                response = None
            server.metrics.observe(self._kind, response, perf_counter() - start)
            if response is None:
                continue
            if type(response) is Transfer:
                out.extend(map(frame, response.messages))
            else:
                out.append(frame(response))
        if out:
            transport.write(b"".join(out))

    def _check_idle(self) -> None:
        """Close a connection idle too long, or one whose message is not whole in time."""
        if self._transport is None:
            return
        loop = asyncio.get_running_loop()
        server = self._server
        if self._framer.pending:
            remaining = self._started + server.tcp_message_timeout - loop.time()
        else:
            remaining = self.last + server.tcp_idle_timeout - loop.time()
        if remaining <= 0 and self._framer.pending:
            self._transport.abort()  # a message not whole in time: nothing to flush
        elif remaining <= 0:
            self._transport.close()
        else:
            self._timer = loop.call_later(remaining, self._check_idle)

    def shed(self) -> None:
        """Closed to make room for a newcomer."""
        if self._transport is not None:
            self._transport.abort()

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._server._remove(self)
        self._transport = None


class DnsServer:
    """Authoritative DNS over UDP and TCP for the answer table it holds."""

    def __init__(
        self,
        table: AnswerTable,
        listen: Sequence[tuple[str, int]] = DEFAULT_LISTEN,
        *,
        metrics: DnsMetrics | None = None,
        tcp_idle_timeout: float = 10.0,
        tcp_message_timeout: float = 2.0,
        max_tcp_connections: int = 1024,
        max_tcp_per_source: int = 64,
        udp_receive_buffer: int = 4 << 20,
        rrl: ResponseRateLimiter | None = None,
        udp: bool = True,
        tcp: bool = True,
        udp_sockets: Sequence[socket.socket] = (),
        tls_listen: Sequence[tuple[str, int]] = (),
        tls: ssl.SSLContext | None = None,
        tls_handshake_timeout: float = 5.0,
    ) -> None:
        """``udp``/``tcp``: which transports to bind on ``listen``; ``udp_sockets``: UDP sockets
        bound already (a DNS worker's SO_REUSEPORT sockets), served as well; ``tls_listen``:
        DNS over TLS addresses (RFC 7858) served with ``tls``, under the TCP limits."""
        if tls_listen and tls is None:
            raise ValueError("tls_listen needs a tls context")
        self.tls_listen = tuple(tls_listen)
        self.tls = tls
        self.tls_handshake_timeout = tls_handshake_timeout
        self.table = table
        self.listen = tuple(listen)
        self.udp = udp
        self.tcp = tcp
        self._udp_sockets = tuple(udp_sockets)
        self.metrics = metrics or DnsMetrics()
        self.metrics.watch_table(lambda: self.table)
        self.rrl = rrl  # UDP response-rate limiting (rrl.py); None: off
        # UDP answers by query bytes, per table, each with what it adds to the metrics
        self.packet_cache: PacketCache[Tally] = PacketCache()
        self.metrics.watch_packet_cache(self.packet_cache)
        if rrl is not None:
            self.metrics.watch_rrl(rrl)
        self.tcp_idle_timeout = tcp_idle_timeout
        self.tcp_message_timeout = tcp_message_timeout
        self.max_tcp_connections = max_tcp_connections
        self.max_tcp_per_source = max_tcp_per_source
        self.udp_receive_buffer = udp_receive_buffer
        self._connections: set[_TcpProtocol] = set()
        self._per_source: dict[str, int] = {}
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []
        self.addresses: list[tuple[str, str, int]] = []  # (transport, host, port) actually bound

    def _admit(self, source: str) -> bool:
        """Room for a connection from ``source``? Shed the quietest one when all are taken."""
        if self._per_source.get(source, 0) >= self.max_tcp_per_source:
            return False
        if len(self._connections) >= self.max_tcp_connections:
            quietest = min(self._connections, key=lambda c: c.last)
            self._remove(quietest)
            quietest.shed()
            self.metrics.tcp_shed += 1
        return True

    def _add(self, connection: _TcpProtocol) -> None:
        self._connections.add(connection)
        self._per_source[connection.source] = self._per_source.get(connection.source, 0) + 1
        self.metrics.tcp_connections = len(self._connections)

    def _remove(self, connection: _TcpProtocol) -> None:
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        left = self._per_source.get(connection.source, 0) - 1
        if left > 0:
            self._per_source[connection.source] = left
        else:
            self._per_source.pop(connection.source, None)
        self.metrics.tcp_connections = len(self._connections)

    def swap_table(self, table: AnswerTable) -> None:
        self.table = table  # one assignment: queries see the old table or the new one

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for sock in self._udp_sockets:
                await self._serve_udp(sock)
            for host, port in self.listen:
                if self.udp:
                    await self._serve_udp(udp_socket(host, port, self.udp_receive_buffer))
                if self.tcp:
                    server = await loop.create_server(
                        lambda: _TcpProtocol(self), host, port, reuse_address=True, backlog=1024
                    )
                    self._tcp.append(server)
                    self.addresses.append(("tcp", host, server.sockets[0].getsockname()[1]))
            for host, port in self.tls_listen:
                server = await loop.create_server(
                    lambda: _TcpProtocol(self, "tls"),
                    host,
                    port,
                    reuse_address=True,
                    backlog=1024,
                    ssl=self.tls,
                    ssl_handshake_timeout=self.tls_handshake_timeout,
                )
                self._tcp.append(server)
                self.addresses.append(("tls", host, server.sockets[0].getsockname()[1]))
        except BaseException:
            await self.stop()
            raise
        log.info("dns.listening", addresses=self.addresses, generation=self.table.generation)

    async def _serve_udp(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _UdpProtocol(self), sock=sock
        )
        self._udp.append(transport)
        host, port = sock.getsockname()[:2]
        self.addresses.append(("udp", host, port))

    async def stop(self) -> None:
        for server in self._tcp:
            server.close()
        for connection in list(self._connections):
            connection.close()
        for transport in self._udp:
            transport.close()
        for server in self._tcp:
            await server.wait_closed()
        self._tcp.clear()
        self._udp.clear()


def udp_socket(
    host: str, port: int, receive_buffer: int = 4 << 20, *, reuse_port: bool = False
) -> socket.socket:
    """A bound UDP socket for DNS; ``reuse_port``: one of a SO_REUSEPORT group (DNS workers),
    among which the kernel spreads queries by source address and port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (about 2.5x the UDP throughput here), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(
    server: DnsServer,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = new_event_loop,
) -> None:
    """Serve until SIGINT/SIGTERM, on uvloop when available (unless ``loop_factory`` says)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        try:
            await stop.wait()
        finally:
            await server.stop()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
