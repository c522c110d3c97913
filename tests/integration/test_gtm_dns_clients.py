"""The GTM's DNS server on loopback, queried by real clients: dig, kdig and dnspython's resolver."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import subprocess
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest

from controlplane.gtm.dns.server import DnsServer, frame
from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.zone import StaticRecord, Zone
from controlplane.gtm.groups import ClientGroups
from tests.support.dns import (
    EU_V4,
    EU_V6,
    ORIGIN,
    US_V4,
    DigResult,
    dig,
    sample_table,
    serve_in_thread,
)
from tests.support.procs import free_udp_tcp_port, require_binary

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_udp_tcp_port()
    with serve_in_thread(
        sample_table(), [("127.0.0.1", port), ("::1", port)], tcp_idle_timeout=2.0
    ):
        yield port


@pytest.mark.parametrize("binary", ["dig", "kdig"])
def test_record_types_and_rcodes(port: int, binary: str) -> None:
    def q(name: str, rtype: str = "A", *options: str) -> DigResult:
        return dig("127.0.0.1", port, name, rtype, *options, binary=binary)

    a = q(f"app.{ORIGIN}", "A", "-b", "127.0.0.2")
    assert a.status == "NOERROR" and "aa" in a.flags and a.rdata("A") == [EU_V4]
    assert q(f"app.{ORIGIN}", "AAAA", "-b", "127.0.0.2").rdata("AAAA") == [EU_V6]
    assert q(ORIGIN, "SOA").rdata("SOA")[0].startswith(f"ns1.{ORIGIN}.")
    assert sorted(q(ORIGIN, "NS").rdata("NS")) == [f"ns1.{ORIGIN}.", f"ns2.{ORIGIN}."]
    srv = q(f"_http._tcp.app.{ORIGIN}", "SRV", "-b", "127.0.0.3").rdata("SRV")
    assert srv == [f"0 2 8080 us-east-1.app.{ORIGIN}."]
    nx = q(f"nope.{ORIGIN}")
    assert nx.status == "NXDOMAIN" and "SOA" in nx.authority[0]
    nodata = q(f"static.{ORIGIN}", "AAAA")
    assert nodata.status == "NOERROR" and not nodata.answer and nodata.authority
    assert q("example.org").status == "REFUSED"
    no_negotiation = ["+noednsneg"] if binary == "dig" else []
    assert q(f"app.{ORIGIN}", "A", "+edns=1", *no_negotiation).status == "BADVERS"


@pytest.mark.parametrize("binary", ["dig", "kdig"])
def test_tcp_and_truncation_retry(port: int, binary: str) -> None:
    tcp = dig("127.0.0.1", port, f"big.{ORIGIN}", "TXT", "+tcp", binary=binary)
    assert tcp.status == "NOERROR" and len(tcp.answer) == 1
    truncated = dig(
        "127.0.0.1", port, f"big.{ORIGIN}", "TXT", "+bufsize=512", "+ignore", binary=binary
    )
    assert "tc" in truncated.flags and not truncated.answer
    retried = dig("127.0.0.1", port, f"big.{ORIGIN}", "TXT", "+bufsize=512", binary=binary)
    assert retried.status == "NOERROR" and len(retried.answer) == 1  # the client retried over TCP


@pytest.mark.parametrize("binary", ["dig", "kdig"])
def test_ecs_gives_groups_different_answers(port: int, binary: str) -> None:
    eu = dig("127.0.0.1", port, f"app.{ORIGIN}", "A", "+subnet=10.1.0.0/16", binary=binary)
    us = dig("127.0.0.1", port, f"app.{ORIGIN}", "A", "+subnet=10.2.0.0/16", binary=binary)
    assert eu.rdata("A") == [EU_V4] and us.rdata("A") == [US_V4]
    assert eu.ecs_scope == 16 and us.ecs_scope == 16
    static = dig("127.0.0.1", port, f"static.{ORIGIN}", "A", "+subnet=10.2.0.0/16", binary=binary)
    assert static.ecs_scope == 0


def test_ipv6_listener(port: int) -> None:
    result = dig("::1", port, f"app.{ORIGIN}", "A")
    assert result.status == "NOERROR" and sorted(result.rdata("A")) == [EU_V4, US_V4]
    assert dig("::1", port, f"app.{ORIGIN}", "A", "+tcp").status == "NOERROR"


def test_dnspython_stub_resolver(port: int) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.lifetime = 5
    assert sorted(r.to_text() for r in resolver.resolve(f"app.{ORIGIN}", "A")) == [EU_V4, US_V4]
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve(f"nope.{ORIGIN}", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve(f"static.{ORIGIN}", "AAAA")
    txt = resolver.resolve(f"big.{ORIGIN}", "TXT")  # truncated over UDP, retried over TCP
    assert len(txt.rrset or []) == 1


def test_several_pipelined_queries_on_one_connection(port: int) -> None:
    queries = [
        dns.message.make_query(f"{n}.{ORIGIN}", "A") for n in ("app", "static", "nope", "www")
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"".join(frame(q.to_wire()) for q in queries))
        replies = [dns.query.receive_tcp(sock, expiration=None)[0] for _ in queries]
        assert [r.id for r in replies] == [q.id for q in queries]
        assert [r.rcode() for r in replies] == [0, 0, dns.rcode.NXDOMAIN, 0]
        again = dns.message.make_query(f"app.{ORIGIN}", "AAAA")  # the connection stays open
        dns.query.send_tcp(sock, again, None)
        assert dns.query.receive_tcp(sock, expiration=None)[0].id == again.id


def test_idle_tcp_connection_is_closed(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        assert sock.recv(1) == b""  # closed by the server after the 2 s idle timeout


def test_connection_limit_and_table_swap() -> None:
    import asyncio

    port = free_udp_tcp_port()
    table = sample_table(generation=1)
    with serve_in_thread(table, [("127.0.0.1", port)], max_tcp_connections=1) as server:
        assert isinstance(server, DnsServer)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as first:
            query = dns.message.make_query(f"app.{ORIGIN}", "A")
            dns.query.send_tcp(first, query, None)
            assert dns.query.receive_tcp(first, expiration=None)[0].id == query.id
            with socket.create_connection(("127.0.0.1", port), timeout=5) as second:
                # over the limit: the quietest connection (the first) makes room
                with contextlib.suppress(ConnectionResetError):  # closed, or reset
                    assert first.recv(1) == b""
                dns.query.send_tcp(second, query, None)
                assert dns.query.receive_tcp(second, expiration=None)[0].id == query.id
        server.swap_table(sample_table(generation=2, nameserver_ip="127.0.0.53"))
        assert dig("127.0.0.1", port, f"ns1.{ORIGIN}").rdata("A") == ["127.0.0.53"]
        assert server.table.generation == 2
        del asyncio


def test_dig_axfr_of_a_zone_over_64k_gets_every_record_between_two_soas() -> None:
    reason = "x" * 250
    records = tuple(StaticRecord(f"n{i}.{ORIGIN}", "TXT", f'"{reason}" "{i}"') for i in range(600))
    zone = Zone(ORIGIN, (f"ns1.{ORIGIN}",), records=records)  # ~ 160 KB: three messages
    table = AnswerTable.build(
        [zone], [], ClientGroups(), allow_transfer=[ipaddress.ip_network("127.0.0.1/32")]
    )
    port = free_udp_tcp_port()
    with serve_in_thread(table, [("127.0.0.1", port)]):
        argv = [require_binary("dig"), "@127.0.0.1", "-p", str(port), ORIGIN, "AXFR"]
        argv += ["+time=5", "+tries=1", "+nocmd"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    lines = [line.split(None, 4) for line in done.stdout.splitlines() if line.strip()]
    lines = [f for f in lines if not f[0].startswith(";")]
    assert lines, done.stdout + done.stderr
    types = [f[3] for f in lines]
    assert types[0] == types[-1] == "SOA" and types.count("SOA") == 2, done.stdout[-2000:]
    assert {f[0] for f in lines if f[3] == "TXT"} == {f"n{i}.{ORIGIN}." for i in range(600)}
    messages = re.search(r"XFR size: \d+ records \(messages (\d+)", done.stdout)
    assert messages is not None and int(messages.group(1)) >= 3, done.stdout[-500:]
