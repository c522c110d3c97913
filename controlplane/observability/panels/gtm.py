"""Ubiq / GTM: DNS queries, the region each answer sends clients to, health and failovers."""

from __future__ import annotations

from controlplane.observability.panels.model import Dashboard, Query, Row, Variable, graph
from controlplane.observability.panels.promql import POLICY_CHANGES, RATE, quantile, rate_by

NAME = Variable("name", "GTM name", "ubiq_gtm_answer", "name", multi=True)
GTM_REGION = Variable("region", "Region", "ubiq_gtm_target_healthy", "region", multi=True)
_REGION = 'region=~"$region"'


def gtm() -> Dashboard:
    queries = Row(
        "Queries",
        (
            graph(
                "Queries per second by rcode",
                "DNS responses by response code.",
                Query(rate_by("ubiq_dns_responses_total", "rcode"), "{{rcode}}"),
                unit="reqps",
            ),
            graph(
                "Queries per second by type and transport",
                "DNS queries by query type and transport.",
                Query(rate_by("ubiq_dns_requests_total", "type, proto"), "{{type}} {{proto}}"),
                unit="reqps",
            ),
            graph(
                "Answers by region",
                "Answers carrying an address, by the region of the first address.",
                Query(rate_by("ubiq_dns_answers_total", "region", _REGION), "{{region}}"),
                unit="reqps",
            ),
            graph(
                "Response time p99 by type",
                "Time to compute a response (the precomputed-answer path is microseconds).",
                Query(quantile(0.99, "ubiq_dns_request_duration_seconds", "type"), "{{type}}"),
                unit="s",
            ),
        ),
    )
    steering = Row(
        "Steering",
        (
            graph(
                "Current answers",
                "The address answered for each name and client group, and its region.",
                Query('ubiq_gtm_answer{name=~"$name"}', instant=True),
                kind="table",
                width=24,
            ),
            graph(
                "Names answering all-down",
                "1 while no target of the name is healthy for the client group.",
                Query('max by (name) (ubiq_gtm_all_down{name=~"$name"})', "{{name}}"),
            ),
            graph(
                "Failovers",
                "Times a name's answers left a region with no healthy target.",
                Query(
                    f'sum by (name, region) (increase(ubiq_gtm_failovers_total{{name=~"$name",{_REGION}}}[{RATE}]))',
                    "{{name}} left {{region}}",
                ),
            ),
        ),
    )
    health = Row(
        "Health",
        (
            graph(
                "Target health",
                "1 healthy, 0 unhealthy, per health-checked target.",
                Query(f"ubiq_gtm_target_healthy{{{_REGION}}}", "{{cluster}} {{endpoint}}"),
                kind="state-timeline",
                min=0,
                max=1,
            ),
            graph(
                "Probes per second by result",
                "Health probes by target cluster and result.",
                Query(
                    rate_by("ubiq_gtm_health_probes_total", "cluster, result", _REGION),
                    "{{cluster}} {{result}}",
                ),
                unit="reqps",
            ),
            graph(
                "Health transitions",
                "Targets turning healthy or unhealthy.",
                Query(
                    f"sum by (cluster, to) (increase(ubiq_gtm_health_transitions_total{{{_REGION}}}[{RATE}]))",
                    "{{cluster}} to {{to}}",
                ),
            ),
            graph(
                "Probe latency p99",
                "Health probe time (connect and status line), by target cluster.",
                Query(
                    quantile(0.99, "ubiq_gtm_health_probe_duration_seconds", "cluster"),
                    "{{cluster}}",
                ),
                unit="s",
            ),
        ),
    )
    return Dashboard(
        "ubiq-gtm",
        "Ubiq / GTM",
        "The global traffic manager: DNS queries, which region answers, target health and"
        " failovers.",
        (queries, steering, health),
        (NAME, GTM_REGION),
        (POLICY_CHANGES,),
    )
