"""Ubiq / Mesh overview: traffic per region and service, control plane and GTM at a glance."""

from __future__ import annotations

from controlplane.observability.panels.model import Dashboard, Query, Row, graph, stat
from controlplane.observability.panels.promql import (
    ENVOY,
    POLICY_CHANGES,
    REGION,
    REJECTED_CHANGES,
    rate_by,
)
from controlplane.observability.panels.traffic import traffic_row

_ENVOY = ENVOY + ',ubiq_region=~"$region"'


def mesh_overview() -> Dashboard:
    traffic = traffic_row(
        "Traffic",
        _ENVOY,
        region_text="Requests every Envoy sent upstream, by the region of the Envoy.",
        split="service",
        split_text="Upstream requests by service (all subsets and regions).",
        quality_by="service",
        quantiles=(0.99,),
        latency_text="99th percentile of upstream request time (Envoy's upstream_rq_time).",
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
