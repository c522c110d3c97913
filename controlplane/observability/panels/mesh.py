"""Ubiq / Mesh overview: traffic per region and service, control plane and GTM at a glance."""

from __future__ import annotations

from controlplane.observability.panels.model import Dashboard, Query, Row, graph, stat
from controlplane.observability.panels.promql import (
    ENVOY,
    POLICY_CHANGES,
    REGION,
    REJECTED_CHANGES,
    latency,
    rate_by,
    requests,
    success_ratio,
)

_ENVOY = ENVOY + ',ubiq_region=~"$region"'


def mesh_overview() -> Dashboard:
    traffic = Row(
        "Traffic",
        (
            graph(
                "Requests per second by region",
                "Requests every Envoy sent upstream, by the region of the Envoy.",
                Query(requests(_ENVOY, "ubiq_region"), "{{ubiq_region}}"),
                unit="reqps",
            ),
            graph(
                "Requests per second by service",
                "Upstream requests by service (all subsets and regions).",
                Query(requests(_ENVOY, "service", "service"), "{{service}}"),
                unit="reqps",
            ),
            graph(
                "Success rate by service",
                "Share of upstream responses that were not 5xx.",
                Query(success_ratio(_ENVOY, "service", "service"), "{{service}}"),
                unit="percentunit",
                min=0,
                max=1,
            ),
            graph(
                "Latency p99 by service",
                "99th percentile of upstream request time (Envoy's upstream_rq_time).",
                Query(latency(0.99, _ENVOY, "service", "service"), "{{service}}"),
                unit="ms",
            ),
        ),
    )
    control = Row(
        "Control plane and GTM",
        (
            stat(
                "Connected proxies", "xDS streams open to Ubiq.", "sum(ubiq_xds_connected_proxies)"
            ),
            stat(
                "Proxies not synced",
                "Connected proxies that do not hold their group's current snapshot.",
                'sum(ubiq_xds_proxies{state!="synced"})',
            ),
            stat(
                "Last policy change accepted",
                "1: the policy directory's last change was accepted; 0: rejected (the last good"
                " model keeps serving).",
                "min(ubiq_policy_last_reload_successful)",
            ),
            stat(
                "GTM names with every target down",
                "Names answered with their all-down behaviour.",
                "count(max by (name) (ubiq_gtm_all_down) == 1) or vector(0)",
            ),
            graph(
                "DNS queries per second",
                "Queries the GTM received, by transport.",
                Query(rate_by("ubiq_dns_requests_total", "proto"), "{{proto}}"),
                unit="reqps",
            ),
            graph(
                "Envoys up",
                "Envoys Prometheus scraped successfully, by region.",
                Query('sum by (ubiq_region) (up{job="envoy"})', "{{ubiq_region}}"),
            ),
        ),
    )
    return Dashboard(
        "ubiq-mesh",
        "Ubiq / Mesh overview",
        "Traffic through every Envoy, the control plane's health and the GTM at a glance.",
        (traffic, control),
        (REGION,),
        (POLICY_CHANGES, REJECTED_CHANGES),
    )
