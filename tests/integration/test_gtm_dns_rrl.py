"""Response-rate limiting on a real server: one source floods over UDP and gets its rate, the rest
dropped or slipped (TC=1); another prefix is answered in full; the flooder's real client still gets
its answer, over TCP after a slip, with real dig. The limiter's clock is the test's (frozen), so the
counts are exact; the ``ubiq serve`` test runs the real clock through the CLI flags."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import pytest

from controlplane.gtm.dns.rrl import ResponseRateLimiter, RrlConfig
from controlplane.gtm.dns.server import DnsServer
from tests.support.dns import ORIGIN, dig, sample_table, serve_in_thread
from tests.support.procs import free_udp_tcp_port
from tests.support.ubiq_serve import EU, serving, write_policy
from tests.support.ubiq_serve import NAME as SERVED_NAME
from tests.support.ubiq_serve import query as served_query

RATE = 20
FLOOD = 199  # RATE answered, 179 limited: 89 slipped (every 2nd), 90 dropped
FLOODER, NEIGHBOUR = "127.0.1.1", "127.0.2.1"  # two /24s
NAME = f"app.{ORIGIN}"


class FrozenClock:
    def __call__(self) -> float:
        return 0.0


@pytest.fixture
def server() -> Iterator[DnsServer]:
    config = RrlConfig(rate=RATE, slip=2, exempt=())
    with serve_in_thread(
        sample_table(),
        [("127.0.0.1", free_udp_tcp_port())],
        rrl=ResponseRateLimiter(config, FrozenClock()),
    ) as running:
        assert isinstance(running, DnsServer)
        yield running


def port_of(server: DnsServer, transport: str = "udp") -> int:
    return next(p for t, _, p in server.addresses if t == transport)


def flood(
    port: int, source: str, count: int, marker_source: str, name: str = NAME
) -> list[dns.message.Message]:
    """Send ``count`` queries from ``source`` without waiting, then one from ``marker_source``:
    its answer comes after the server handled the whole flood (one socket, in order); return
    what reached the flooder."""
    query = dns.message.make_query(name, "A", use_edns=0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((source, 0))
        for _ in range(count):
            s.sendto(query.to_wire(), ("127.0.0.1", port))
        marker = dns.query.udp(
            dns.message.make_query(name, "A"),
            "127.0.0.1",
            port=port,
            timeout=5,
            source=marker_source,
        )
        assert marker.answer
        s.setblocking(False)
        got = []
        while True:
            try:
                got.append(dns.message.from_wire(s.recv(65535)))
            except BlockingIOError:
                return got


def test_one_source_is_limited_while_another_prefix_is_answered_in_full(server: DnsServer) -> None:
    port = port_of(server)
    got = flood(port, FLOODER, FLOOD, marker_source=NEIGHBOUR)
    full = [m for m in got if not m.flags & dns.flags.TC]
    slipped = [m for m in got if m.flags & dns.flags.TC]
    assert len(full) == RATE and all(m.answer for m in full)
    assert len(slipped) == 89 and not any(m.answer for m in slipped)
    assert server.rrl is not None
    assert (server.rrl.limited, server.rrl.slipped, server.rrl.dropped) == (179, 89, 90)
    # the neighbour prefix (its marker was one of its RATE) is answered in full
    for _ in range(RATE - 1):
        reply = dns.query.udp(
            dns.message.make_query(NAME, "A"), "127.0.0.1", port=port, timeout=5, source=NEIGHBOUR
        )
        assert not reply.flags & dns.flags.TC and reply.answer
    # the flooder's next response slips (the 180th limited); dig retries over TCP and is answered
    result = dig("127.0.0.1", port, NAME, "A", "-b", FLOODER, "+bufsize=1232")
    assert "Truncated, retrying in TCP mode" in result.raw
    assert result.status == "NOERROR" and result.rdata("A")
    assert server.rrl.slipped == 90
    # and plain TCP from the flooder is never limited
    tcp = dig("127.0.0.1", port_of(server, "tcp"), NAME, "A", "+tcp", "-b", FLOODER)
    assert tcp.status == "NOERROR" and tcp.rdata("A") and "tc" not in tcp.flags


def test_the_metrics_count_limited_slipped_and_dropped(server: DnsServer) -> None:
    flood(port_of(server), FLOODER, 40, marker_source=NEIGHBOUR)
    text = {
        m.name: m.samples[0].value
        for m in server.metrics.collect()
        if m.name.startswith("ubiq_dns_rrl")
    }
    assert text == {
        "ubiq_dns_rrl_limited": 20,
        "ubiq_dns_rrl_slipped": 10,
        "ubiq_dns_rrl_dropped": 10,
        "ubiq_dns_rrl_evicted": 0,
        "ubiq_dns_rrl_accounts": 2,
    }


def test_ubiq_serve_limits_with_its_flags(tmp_path: Path) -> None:
    """The real clock: a rate of 1 and a 60 s window, so a flood of 100 is mostly limited."""
    write_policy(tmp_path / "policies")
    flags = ("--dns-rrl-rate", "1", "--dns-rrl-window", "60", "--dns-rrl-exempt", "127.0.9.0/24")
    with serving(tmp_path / "policies", tmp_path, *flags) as served:
        assert served_query(served.dns_port, timeout=5) == [EU]
        query = dns.message.make_query(SERVED_NAME, "A")
        got = flood(served.dns_port, "127.0.0.1", 100, "127.0.9.9", SERVED_NAME)
        full = [m for m in got if not m.flags & dns.flags.TC]
        assert len(full) < 50 and any(m.flags & dns.flags.TC for m in got)
        exempt = [
            dns.query.udp(query, "127.0.0.1", port=served.dns_port, timeout=5, source="127.0.9.9")
            for _ in range(20)
        ]
        assert all(r.answer and not r.flags & dns.flags.TC for r in exempt)
        assert [rd.to_text() for r in exempt[:1] for rrset in r.answer for rd in rrset] == [EU]
