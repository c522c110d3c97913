"""Real dig and kdig, +bufsize from 512 to 4096 and without EDNS, against big TXT records, big
A/AAAA RRsets and a steered name: every UDP answer fits the advertised size (512 without EDNS,
our 1232 at most); an answer that fits comes whole, one that does not comes TC and the clients
get it whole over TCP."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from controlplane.gtm.dns.server import DnsServer
from tests.support.dns import dig, serve_in_thread
from tests.support.dns_sizes import size_names, size_table
from tests.support.procs import free_udp_tcp_port

OURS = 1232
SIZES = (None, 512, 700, 1000, 1232, 4096)  # None: no EDNS


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serve_in_thread(size_table(OURS), [("127.0.0.1", free_udp_tcp_port())]) as server:
        assert isinstance(server, DnsServer)
        yield next(p for t, _, p in server.addresses if t == "udp")


def received(raw: str) -> int:
    """The size of the response, as dig (MSG SIZE rcvd) or kdig (Received N B) reports it."""
    found = re.search(r"MSG SIZE\s+rcvd: (\d+)", raw) or re.search(r"Received (\d+) B", raw)
    assert found, raw
    return int(found.group(1))


@pytest.mark.parametrize("binary", ["dig", "kdig"])
def test_udp_answers_fit_the_advertised_size(port: int, binary: str) -> None:
    for name, rtype in size_names():
        whole = dig("127.0.0.1", port, name, rtype, "+tcp", binary=binary)
        assert whole.status == "NOERROR" and whole.answer, whole.raw
        for size in SIZES:
            edns = ["+noedns"] if size is None else [f"+bufsize={size}"]
            udp = dig("127.0.0.1", port, name, rtype, *edns, "+ignore", binary=binary)
            limit = 512 if size is None else min(max(size, 512), OURS)
            got = received(udp.raw)
            assert got <= limit, f"{name} {rtype} bufsize {size}: {got} bytes > {limit}"
            if "tc" in udp.flags:
                assert not udp.answer
            else:
                assert sorted(udp.answer) == sorted(whole.answer), f"{name} {rtype} {size}"
            if "tc" in udp.flags and size is not None:  # without +ignore the client goes to TCP
                retried = dig("127.0.0.1", port, name, rtype, *edns, binary=binary)
                assert sorted(retried.answer) == sorted(whole.answer)


def test_client_subnet_echo_never_pushes_an_answer_over_the_size(port: int) -> None:
    for name, rtype in size_names():
        for size in (512, 1000, 1232):
            udp = dig(
                "127.0.0.1", port, name, rtype, f"+bufsize={size}", "+subnet=10.1.2.0/24", "+ignore"
            )
            assert received(udp.raw) <= size, f"{name} {rtype} {size}"
