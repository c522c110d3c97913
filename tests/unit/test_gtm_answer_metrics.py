"""DNS metrics: counted in plain dicts on the hot path, exposed on an explicit registry."""

from __future__ import annotations

import dns.message
from prometheus_client import CollectorRegistry, generate_latest

from controlplane.gtm.answer import Client, answer
from controlplane.gtm.metrics import DnsMetrics
from tests.support.dns import ORIGIN, sample_table


def test_metrics_by_transport_qtype_rcode_and_table_gauges() -> None:
    registry = CollectorRegistry()
    metrics = DnsMetrics(registry)
    table = sample_table(generation=7)
    metrics.watch_table(lambda: table)
    for name, rtype in (
        (f"app.{ORIGIN}", "A"),
        (f"nope.{ORIGIN}", "AAAA"),
        (f"big.{ORIGIN}", "TXT"),
    ):
        query = dns.message.make_query(name, rtype).to_wire()
        metrics.observe("udp", answer(query, table, Client("127.0.0.2")), 0.00002)
    metrics.observe("udp", None, 0.0)
    text = generate_latest(registry).decode()
    assert 'ubiq_dns_responses_total{qtype="A",rcode="NOERROR",transport="udp"} 1.0' in text
    assert 'ubiq_dns_responses_total{qtype="AAAA",rcode="NXDOMAIN",transport="udp"} 1.0' in text
    assert "ubiq_dns_truncated_total 1.0" in text
    assert 'ubiq_dns_dropped_total{transport="udp"} 1.0' in text
    assert "ubiq_dns_table_generation 7.0" in text
    assert f"ubiq_dns_table_entries {float(table.size)}" in text
    assert 'ubiq_dns_answer_seconds_bucket{le="2.5e-05"} 3.0' in text
