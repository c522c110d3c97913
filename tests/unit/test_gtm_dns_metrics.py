"""DNS metrics: counted in plain dicts on the hot path, exposed on an explicit registry; the
answers being served (ubiq_gtm_answer), read from the live plan."""

from __future__ import annotations

import pickle

import dns.message
import dns.rdatatype
from prometheus_client import CollectorRegistry, generate_latest

from controlplane.gtm.dns.answer import Client, answer
from controlplane.gtm.dns.metrics import DnsMetrics
from controlplane.gtm.dns.zone import Zone
from controlplane.gtm.plan import GtmPlan, decide
from controlplane.gtm.runtime import GtmRuntime
from controlplane.gtm.types import HealthView, SteeringPolicy, Target
from tests.support.dns import EU_V4, ORIGIN, US_V4, sample_table


def test_metrics_by_proto_type_rcode_and_table_gauges() -> None:
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
    assert 'ubiq_dns_responses_total{proto="udp",rcode="NOERROR",type="A"} 1.0' in text
    assert 'ubiq_dns_responses_total{proto="udp",rcode="NXDOMAIN",type="AAAA"} 1.0' in text
    assert 'ubiq_dns_requests_total{proto="udp",type="A"} 1.0' in text
    assert 'ubiq_dns_requests_total{proto="udp",type="NONE"} 1.0' in text  # the dropped one
    assert "ubiq_dns_truncated_total 1.0" in text
    assert 'ubiq_dns_dropped_total{proto="udp"} 1.0' in text
    assert f"ubiq_dns_table_entries {float(table.size)}" in text
    assert 'ubiq_dns_request_duration_seconds_bucket{le="2.5e-05",type="A"} 1.0' in text
    assert 'ubiq_dns_request_duration_seconds_count{type="TXT"} 1.0' in text


def test_answers_are_counted_by_the_region_of_the_first_address() -> None:
    """The answered region comes from the first A/AAAA record, looked up at scrape time; CNAME
    chains are followed; the addresses come from the table, so the series are bounded."""
    registry = CollectorRegistry()
    metrics = DnsMetrics(registry)
    regions = {EU_V4: "eu-west", US_V4: "us-east"}
    metrics.watch_regions(lambda address: regions.get(address, ""))
    table = sample_table()
    for name, client in (
        (f"app.{ORIGIN}", "127.0.0.2"),  # eu group
        (f"APP.{ORIGIN}", "127.0.0.2"),
        (f"app.{ORIGIN}", "127.0.0.3"),  # us group
        (f"www.{ORIGIN}", "127.0.0.3"),  # CNAME to app, then its address
        (f"static.{ORIGIN}", "127.0.0.3"),  # no target: region ""
        (f"nope.{ORIGIN}", "127.0.0.3"),  # NXDOMAIN: not an answer
    ):
        query = dns.message.make_query(name, "A").to_wire()
        metrics.observe("udp", answer(query, table, Client(client)), 0.00001)
    text = generate_latest(registry).decode()
    assert f'ubiq_dns_answers_total{{address="{EU_V4}",region="eu-west"}} 2.0' in text
    assert f'ubiq_dns_answers_total{{address="{US_V4}",region="us-east"}} 2.0' in text
    assert 'ubiq_dns_answers_total{address="192.0.2.1",region=""} 1.0' in text
    assert text.count("ubiq_dns_answers_total{") == 3
    assert 'ubiq_dns_responses_total{proto="udp",rcode="NOERROR",type="A"} 5.0' in text


def test_unknown_qtypes_share_one_label() -> None:
    registry = CollectorRegistry()
    metrics = DnsMetrics(registry)
    make = dns.rdatatype.RdataType.make
    for rtype in (make(4000), make(4001), make(65280), make("CAA"), make("PTR")):
        query = dns.message.make_query(f"app.{ORIGIN}", rtype)
        metrics.observe("udp", dns.message.make_response(query).to_wire(), 0.00002)
    text = generate_latest(registry).decode()
    assert 'ubiq_dns_responses_total{proto="udp",rcode="NOERROR",type="OTHER"} 3.0' in text
    assert 'type="CAA"' in text and 'type="PTR"' in text
    assert 'type="4000"' not in text
    assert len(metrics.responses) == 3


def test_answer_metric_gives_every_address_its_own_region() -> None:
    """Two addresses in one region, and fallback addresses (no target: region "")."""
    eu_a = Target("eu-a", "eu-west", "127.0.0.11", 443)
    eu_b = Target("eu-b", "eu-west", "127.0.0.12", 443)
    us = Target("us", "us-west", "127.0.0.13", 443)
    both = SteeringPolicy("app.gtm.example", "gtm.example", "failover", (eu_a, eu_b, us), 10, 3)
    fallback = SteeringPolicy(
        "fb.gtm.example",
        "gtm.example",
        "failover",
        (us,),
        10,
        all_down="fallback",
        fallback=("192.0.2.1",),
    )
    health = HealthView(frozenset(), frozenset({("us", us.address, 443)}))
    policies = {p.name: p for p in (both, fallback)}
    registry = CollectorRegistry()
    runtime = GtmRuntime(registry=registry)
    zones = (Zone("gtm.example", ("ns1.gtm.example",)),)
    runtime._plan = decide(GtmPlan(policies, (), zones, ()), health, epoch=1)
    text = generate_latest(registry).decode()
    expected = [
        ("app.gtm.example", "eu-west", "127.0.0.11"),
        ("app.gtm.example", "eu-west", "127.0.0.12"),
        ("fb.gtm.example", "", "192.0.2.1"),
    ]
    for name, region, address in expected:
        labels = f'address="{address}",group="default",name="{name}",region="{region}"'
        assert f"ubiq_gtm_answer{{{labels}}} 1.0" in text
    assert text.count("ubiq_gtm_answer{") == 3


def test_observe_never_raises_on_short_or_odd_responses() -> None:
    """The server calls observe outside any try: every cut of a real answer after its header
    (answer() never returns less than a header) is counted, none raises."""
    metrics = DnsMetrics(CollectorRegistry())
    query = dns.message.make_query(f"www.{ORIGIN}", "A").to_wire()  # CNAME, then A
    response = answer(query, sample_table(), Client("127.0.0.3"))
    assert response is not None
    for n in range(12, len(response) + 1):
        metrics.observe("udp", response[:n], 0.00001)
    assert sum(metrics.responses.values()) == len(response) - 11


def test_worker_counts_taken_as_deltas_add_up_in_the_main_metrics() -> None:
    """A worker's counts travel as deltas (pickled over its socket pair): after any number of
    takes, the main process shows the sum of everything every worker counted."""
    registry = CollectorRegistry()
    main = DnsMetrics(registry)
    table = sample_table()
    query = dns.message.make_query(f"app.{ORIGIN}", "A").to_wire()
    response = answer(query, table, Client("127.0.0.2"))
    workers = [DnsMetrics(), DnsMetrics()]
    for rounds, worker in zip((3, 5), workers, strict=True):
        for _ in range(rounds):
            worker.observe("udp", response, 0.00002)
            worker.observe("udp", None, 0.0)
            main.merge(pickle.loads(pickle.dumps(worker.take())))
        assert worker.take().responses == {}  # nothing counted twice
    main.merge(workers[0].take())  # an empty delta changes nothing
    text = generate_latest(registry).decode()
    assert 'ubiq_dns_responses_total{proto="udp",rcode="NOERROR",type="A"} 8.0' in text
    assert 'ubiq_dns_dropped_total{proto="udp"} 8.0' in text
    assert 'ubiq_dns_request_duration_seconds_count{type="A"} 8.0' in text
