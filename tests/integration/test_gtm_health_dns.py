"""The whole GTM loop on loopback: health checks -> steering -> answer table -> DNS answers.

Two real HTTP backends stand for two regions; a real DNS client (dnspython) asks the GTM's DNS
server. Stopping the preferred backend moves the answer to the backup; restarting it moves the
answer back. ``explain`` says why.
"""

from __future__ import annotations

import asyncio
import contextlib

import dns.asyncquery
import dns.message
import dns.rdatatype
import pytest
from prometheus_client import CollectorRegistry

from controlplane.gtm.dns.server import DnsServer
from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.zone import Zone
from controlplane.gtm.explain import explain
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.health.checker import HealthChecker
from controlplane.gtm.health.state import CheckedTarget, HealthCheck
from controlplane.gtm.steering import steer_all
from controlplane.gtm.types import ClientGroup, HealthView, SteeringPolicy, Target
from tests.support.poll import until
from tests.support.procs import free_port, free_udp_tcp_port

pytestmark = pytest.mark.integration

NAME = "app.gtm.example"
CHECK = HealthCheck(interval=0.1, timeout=0.5, healthy_threshold=2, unhealthy_threshold=2)


async def _ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
    writer.close()


async def _ask(port: int) -> list[str]:
    query = dns.message.make_query(f"{NAME}.", dns.rdatatype.A)
    response = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=2.0)
    return sorted(rr.address for rrset in response.answer for rr in rrset)


async def _answers(port: int, expected: list[str]) -> bool:
    return await _ask(port) == expected


async def test_dns_answer_follows_backend_health() -> None:
    eu_port, us_port = free_port("127.0.0.2"), free_port("127.0.0.3")
    eu = Target("eu-1", "eu-west", "127.0.0.2", eu_port, tier=0)
    us = Target("us-1", "us-west", "127.0.0.3", us_port, tier=1)
    policy = SteeringPolicy(NAME, "gtm.example", "failover", (eu, us), ttl=5)
    zone = Zone("gtm.example", ("ns1.gtm.example",), glue={"ns1.gtm.example": ("127.0.0.1",)})
    groups = ClientGroups([])
    group_list = [ClientGroup("default", ())]

    def build(health: HealthView, generation: int) -> AnswerTable:
        decisions = steer_all([policy], group_list, health, epoch=generation)
        return AnswerTable.build(
            [zone], decisions.values(), groups, [policy], generation=generation
        )

    dns_port = free_udp_tcp_port()
    server = DnsServer(build(HealthView(frozenset()), 0), [("127.0.0.1", dns_port)])
    generations = iter(range(1, 1_000))

    def on_change(view: HealthView) -> None:
        server.swap_table(build(view, next(generations)))

    eu_server = await asyncio.start_server(_ok, "127.0.0.2", eu_port)
    us_server = await asyncio.start_server(_ok, "127.0.0.3", us_port)
    checker = HealthChecker(
        [CheckedTarget(eu, CHECK), CheckedTarget(us, CHECK)],
        on_change,
        registry=CollectorRegistry(),
    )
    await server.start()
    try:
        async with checker:
            await until(
                lambda: _answers(dns_port, ["127.0.0.2"]), what="answer 127.0.0.2", interval=0.05
            )
            eu_server.close()
            await eu_server.wait_closed()
            await until(
                lambda: _answers(dns_port, ["127.0.0.3"]), what="answer 127.0.0.3", interval=0.05
            )

            view = checker.view()
            decision = steer_all([policy], group_list, view)[(NAME, "default")]
            text = explain(policy, group_list[0], view, decision)
            assert "failing over to tier 1" in text
            assert "eu-west unhealthy (2 failed probes: connection refused)" in text

            eu_server = await asyncio.start_server(_ok, "127.0.0.2", eu_port)
            await until(
                lambda: _answers(dns_port, ["127.0.0.2"]), what="answer 127.0.0.2", interval=0.05
            )
    finally:
        eu_server.close()
        us_server.close()
        await server.stop()
