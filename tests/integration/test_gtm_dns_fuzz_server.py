"""A live DNS server fed mutated and random packets over UDP and TCP (framed, mis-framed, and
garbage streams): every reply it sends is a protocol-correct DNS message, and afterwards it still
answers a plain query on both transports."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from controlplane.gtm.dns.server import DnsServer, frame
from tests.support.dns import EU_V4, ORIGIN, sample_table, serve_in_thread
from tests.support.dns_mutate import fuzzed_query
from tests.support.procs import free_udp_tcp_port

PACKETS = 600
MARKER = f"marker.{ORIGIN}"  # NXDOMAIN: the reply that says everything before it was handled


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with serve_in_thread(
        sample_table(allow_transfer=["127.0.0.0/8"]), [("127.0.0.1", free_udp_tcp_port())]
    ) as running:
        assert isinstance(running, DnsServer)
        yield running


def port_of(server: DnsServer, transport: str) -> int:
    return next(p for t, _, p in server.addresses if t == transport)


def check_reply(wire: bytes) -> dns.message.Message:
    parsed = dns.message.from_wire(wire)
    assert parsed.flags & dns.flags.QR
    if parsed.flags & dns.flags.TC:
        assert not parsed.answer
    return parsed


def is_marker(message: dns.message.Message) -> bool:
    return bool(message.question) and message.question[0].name.to_text(True).lower() == MARKER


def still_answers(server: DnsServer) -> None:
    query = dns.message.make_query(f"app.{ORIGIN}", "A")
    for reply in (
        dns.query.udp(query, "127.0.0.1", port=port_of(server, "udp"), timeout=5),
        dns.query.tcp(query, "127.0.0.1", port=port_of(server, "tcp"), timeout=5),
    ):
        assert reply.rcode() == dns.rcode.NOERROR and EU_V4 in reply.answer[0].to_text()


def test_udp_fuzz(server: DnsServer) -> None:
    rng = random.Random(20261203)
    port = port_of(server, "udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.connect(("127.0.0.1", port))
        for _ in range(PACKETS):
            s.send(fuzzed_query(rng))
        s.send(dns.message.make_query(MARKER, "A").to_wire())
        s.settimeout(10)
        replies = 0
        while True:
            parsed = check_reply(s.recv(65535))
            replies += 1
            if is_marker(parsed):
                break
    assert 0 < replies <= PACKETS + 1
    still_answers(server)


def test_tcp_fuzz_framed_misframed_and_garbage(server: DnsServer) -> None:
    rng = random.Random(1203)
    port = port_of(server, "tcp")
    # framed mutated queries on one connection, then the marker: every reply before it parses
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        stream = b"".join(frame(fuzzed_query(rng)) for _ in range(PACKETS // 2))
        s.sendall(stream + frame(dns.message.make_query(MARKER, "A").to_wire()))
        while True:
            length = int.from_bytes(recv_exact(s, 2))
            if is_marker(check_reply(recv_exact(s, length))):
                break
    # mis-framed and garbage streams: whatever comes back (possibly nothing) parses
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            junk = rng.randbytes(rng.randint(1, 300))
            if rng.random() < 0.5:
                junk = frame(fuzzed_query(rng))[: rng.randint(1, 40)] + junk
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65535):
                data += chunk
        while len(data) >= 2:
            length = int.from_bytes(data[:2])
            if len(data) < 2 + length:
                break
            check_reply(data[2 : 2 + length])
            data = data[2 + length :]
    still_answers(server)


def recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "connection closed early"
        out += chunk
    return out
