"""Response-rate limiting across DNS workers (``ubiq serve --dns-workers 2``): one source address
flooding over 64 source ports reaches both workers (the kernel picks a worker by the 4-tuple),
and still gets the configured rate in total, not once per worker, because the workers share one
account table; a second prefix has its own account; the table survives a killed worker, and it
never appears in /dev/shm.

How the flood's end is known without a sleep: after its share of the flood each socket sends one
NXDOMAIN query (a separate account with a high rate, so never limited). A socket's datagrams all
reach the same worker socket, which answers them in order, so once every socket has its NXDOMAIN
reply, every flood query has been answered, slipped or dropped. The bound on full answers comes
from the rate and that measured time: a burst of one second plus the refill while it lasted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import httpx

from tests.integration.test_gtm_dns_workers import workers_of
from tests.support.poll import wait_until
from tests.support.ubiq_serve import NAME, serving, write_policy

RATE = 20
QUERIES = 1200  # well over both workers' share of RATE per second, even on a slow machine
PORTS = 64  # source ports per flood: P(all on one of 2 workers) = 2**-63
FLOODER, SECOND = "127.0.1.1", "127.0.2.1"  # two /24s
MARKER_ID = 0xFFFF
FLAGS = (
    "--dns-workers", "2", "--dns-rrl-rate", str(RATE), "--dns-rrl-window", "60",
    "--dns-rrl-nxdomain-rate", "100000", "--dns-rrl-slip", "2", "--dns-rrl-exempt", "none",
)  # fmt: skip


@dataclass
class Flood:
    full: int  # answers sent whole
    slipped: int  # answers sent truncated (TC=1)
    seconds: float  # from the first query sent to the last marker answered


def flood(port: int, source: str, count: int) -> Flood:
    query = dns.message.make_query(NAME, "A", use_edns=0)
    query.id = 1
    marker = dns.message.make_query(f"nothing.{NAME}", "A", use_edns=0)
    marker.id = MARKER_ID
    sockets = []
    try:
        for _ in range(PORTS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((source, 0))
            sock.settimeout(30)
        wire, marker_wire = query.to_wire(), marker.to_wire()
        start = time.monotonic()
        for n in range(count):
            sockets[n % PORTS].sendto(wire, ("127.0.0.1", port))
        for sock in sockets:
            sock.sendto(marker_wire, ("127.0.0.1", port))
        full = slipped = 0
        for sock in sockets:
            while True:
                reply = dns.message.from_wire(sock.recv(65535))
                if reply.id == MARKER_ID:
                    assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.flags & dns.flags.TC
                    break
                if reply.flags & dns.flags.TC:
                    assert not reply.answer
                    slipped += 1
                else:
                    assert reply.answer
                    full += 1
        return Flood(full, slipped, time.monotonic() - start)
    finally:
        for sock in sockets:
            sock.close()


def rrl_counts(api: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(f"{api}/metrics", timeout=5).text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith(("ubiq_dns_rrl_", "ubiq_dns_worker_restarts")):
            out[name.removeprefix("ubiq_dns_").removesuffix("_total")] = float(value)
    return out


def assert_about_the_rate(got: Flood) -> None:
    """At least the one-second burst, at most the burst and the refill over the flood's time
    (with two workers each keeping its own accounts, it was about twice that). The slack covers
    charges lost when both workers update the account at once (a few)."""
    assert got.full >= RATE, got
    assert got.full <= RATE * (1 + got.seconds) + RATE // 4, got
    limited = QUERIES - got.full
    assert abs(got.slipped - limited / 2) <= limited / 10 + 2, got  # every 2nd limited one


def memfd_mapped(pid: int) -> bool:
    return "/memfd:ubiq-rrl" in Path(f"/proc/{pid}/maps").read_text()


def shm_used(pid: int) -> set[str]:
    """The /dev/shm files a process maps or holds open (other processes on this machine may
    come and go in /dev/shm; these are the ones ours could leave behind)."""
    used = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            used.add(os.readlink(fd))
    return {path for path in used if path.startswith("/dev/shm/")}


def test_a_prefix_gets_the_rate_in_total_across_workers(tmp_path: Path) -> None:
    write_policy(tmp_path / "policies")
    with serving(tmp_path / "policies", tmp_path, *FLAGS) as served:
        wait_until(lambda: len(workers_of(served.proc.pid)) == 2, 30, "two DNS workers")
        workers = workers_of(served.proc.pid)
        assert all(memfd_mapped(pid) for pid in (served.proc.pid, *workers))
        before = rrl_counts(served.api)

        first = flood(served.dns_port, FLOODER, QUERIES)
        assert_about_the_rate(first)
        counts = rrl_counts(served.api)  # a scrape gathers every worker's counts first
        assert counts["rrl_limited"] - before["rrl_limited"] == QUERIES - first.full
        assert counts["rrl_slipped"] - before["rrl_slipped"] == first.slipped
        # the flooder's answers and its NXDOMAIN markers; a new account made by both workers at
        # the same instant can take two slots of its set (docs/security.md), at most one more each
        assert 2 <= counts["rrl_accounts"] <= 4

        # another /24 has its own account: its burst and rate, whatever the flooder's debt
        second = flood(served.dns_port, SECOND, QUERIES)
        assert_about_the_rate(second)
        assert rrl_counts(served.api)["rrl_accounts"] >= counts["rrl_accounts"] + 2

        # a killed worker is restarted and maps the same table: the flooder, 60 s in debt
        # (the window), gets no full answer from either worker
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        wait_until(
            lambda: (
                rrl_counts(served.api).get("worker_restarts") == 1
                and len(workers_of(served.proc.pid) - {killed}) == 2
            ),
            30,
            "the killed DNS worker restarted",
        )
        restarted = workers_of(served.proc.pid) - workers
        assert len(restarted) == 1 and all(memfd_mapped(pid) for pid in restarted)
        again = flood(served.dns_port, FLOODER, 200)
        assert again.full == 0 and again.slipped > 0
        pids = [served.proc.pid, *workers_of(served.proc.pid)]
        assert all(shm_used(pid) == set() for pid in pids)  # nothing in /dev/shm to leak
    wait_until(lambda: not any(mapped(pid) for pid in pids), 10, "no process left mapping it")


def mapped(pid: int) -> bool:
    try:
        return memfd_mapped(pid)
    except (FileNotFoundError, ProcessLookupError):
        return False
