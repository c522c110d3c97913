"""A recursive unbound in front of the GTM: ECS from the resolver steers each client to its region."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.dns import EU_V4, ORIGIN, US_V4, dig, sample_table, serve_in_thread, unbound
from tests.support.procs import free_udp_tcp_port

pytestmark = pytest.mark.integration


def test_unbound_forwards_client_subnet_and_caches_per_subnet(tmp_path: Path) -> None:
    gtm_port = free_udp_tcp_port()
    resolver_port = free_udp_tcp_port()
    with (
        serve_in_thread(sample_table(), [("127.0.0.1", gtm_port)]) as server,
        unbound(tmp_path, resolver_port, gtm_port),
    ):
        for _ in range(2):  # the second round comes from unbound's per-subnet cache
            eu = dig("127.0.0.1", resolver_port, f"app.{ORIGIN}", "A", "+rec", "-b", "127.0.0.2")
            us = dig("127.0.0.1", resolver_port, f"app.{ORIGIN}", "A", "+rec", "-b", "127.0.0.3")
            assert eu.status == "NOERROR" and eu.rdata("A") == [EU_V4], eu.raw
            assert us.status == "NOERROR" and us.rdata("A") == [US_V4], us.raw
        nx = dig("127.0.0.1", resolver_port, f"nope.{ORIGIN}", "A", "+rec", "-b", "127.0.0.2")
        assert nx.status == "NXDOMAIN"
        cname = dig("127.0.0.1", resolver_port, f"www.{ORIGIN}", "A", "+rec", "-b", "127.0.0.3")
        assert cname.rdata("A") == [US_V4]
        assert sum(server.metrics.responses.values()) >= 3
