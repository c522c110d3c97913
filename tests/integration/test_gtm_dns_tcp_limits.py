"""DNS over TCP under a trickle attack: many connections from several sources each send one byte
at a time, and a real client's TCP query is still answered.

Before, each byte restarted the idle timer and connections past the limit were refused, so a
thousand tricklers locked every other TCP client out. The limits are scaled down here (16
connections, 4 per source, a 1 s whole-message deadline) so the attack is quick to mount.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import pytest

from controlplane.gtm.dns.server import DnsServer
from tests.support.dns import ORIGIN, sample_table, serve_in_thread
from tests.support.procs import free_udp_tcp_port

MAX_CONNECTIONS, PER_SOURCE = 16, 4
ATTACKERS = [f"127.0.1.{i}" for i in range(1, 9)]  # 8 sources x 4 = twice the limit
CLIENT = "127.0.0.9"
TRICKLE_EVERY = 0.2  # seconds between bytes: each byte used to restart the idle timer


@pytest.fixture
def server() -> Iterator[DnsServer]:
    port = free_udp_tcp_port()
    with serve_in_thread(
        sample_table(),
        [("127.0.0.1", port)],
        max_tcp_connections=MAX_CONNECTIONS,
        max_tcp_per_source=PER_SOURCE,
        tcp_message_timeout=1.0,
        tcp_idle_timeout=60.0,  # longer than any wait here: closing is the deadline's doing
    ) as running:
        assert isinstance(running, DnsServer)
        yield running


def port_of(server: DnsServer) -> int:
    return next(p for t, _, p in server.addresses if t == "tcp")


class Trickle:
    """Connections that send one byte every TRICKLE_EVERY s and reconnect when dropped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.connects = 0
        self.threads = [
            threading.Thread(target=self._run, args=(source,), daemon=True)
            for source in ATTACKERS
            for _ in range(PER_SOURCE + 1)  # one more than a source may hold
        ]

    def _run(self, source: str) -> None:
        rounds = 0
        while not self.stop.is_set() and rounds < 10_000:
            rounds += 1
            with (
                contextlib.suppress(OSError),
                socket.create_connection(
                    ("127.0.0.1", self.port), timeout=2, source_address=(source, 0)
                ) as sock,
            ):
                self.connects += 1
                while not self.stop.wait(TRICKLE_EVERY):
                    sock.sendall(b"\x00")  # a length prefix that never completes
            self.stop.wait(0.05)

    def __enter__(self) -> Trickle:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_a_tcp_query_is_answered_during_a_trickle_attack(server: DnsServer) -> None:
    port = port_of(server)
    query = dns.message.make_query(f"app.{ORIGIN}", "A")
    with Trickle(port):
        # the attack holds every slot, and sources beyond their share are refused or shed
        wait_for(
            lambda: (
                server.metrics.tcp_connections == MAX_CONNECTIONS
                and server.metrics.tcp_rejected > 0
            ),
            20,
            "the attack to fill every connection slot",
        )
        for _ in range(10):
            response = dns.query.tcp(query, "127.0.0.1", port=port, timeout=3, source=CLIENT)
            assert response.rcode() == dns.rcode.NOERROR and response.answer
        assert server.metrics.tcp_shed >= 10  # each newcomer took the quietest slot
        # a trickled message is cut at its deadline, so holders keep reconnecting
        shed_before = server.metrics.tcp_shed
        wait_for(
            lambda: (
                server.metrics.tcp_connections == MAX_CONNECTIONS
                and server.metrics.tcp_shed > shed_before
            ),
            20,
            "tricklers to be cut off and come back",
        )


def test_a_partial_message_is_cut_at_its_deadline(server: DnsServer) -> None:
    port = port_of(server)
    # closed by the 1 s message deadline; the idle timeout (60 s) would never fire within the
    # socket's 10 s timeout, which fails the test with TimeoutError
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\x00")
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""


def test_one_source_holds_at_most_its_share(server: DnsServer) -> None:
    port = port_of(server)
    held = [
        socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(CLIENT, 0))
        for _ in range(PER_SOURCE)
    ]
    try:
        wait_for(lambda: server.metrics.tcp_connections == PER_SOURCE, 10, "the source's share")
        with (
            socket.create_connection(
                ("127.0.0.1", port), timeout=5, source_address=(CLIENT, 0)
            ) as extra,
            contextlib.suppress(ConnectionResetError),
        ):
            assert extra.recv(1) == b""  # refused: closed at once
        assert server.metrics.tcp_rejected == 1
        # the held ones still work
        query = dns.message.make_query(f"app.{ORIGIN}", "A")
        dns.query.send_tcp(held[0], query, None)
        assert dns.query.receive_tcp(held[0], expiration=time.time() + 5)[0].id == query.id
    finally:
        for sock in held:
            sock.close()
