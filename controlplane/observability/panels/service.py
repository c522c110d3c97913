"""Ubiq / Service: one service per region -- rate, success, latency, bytes, resilience."""

from __future__ import annotations

from controlplane.observability.panels.model import Dashboard, Query, Row, graph
from controlplane.observability.panels.promql import (
    POLICY_CHANGES,
    REGION,
    SERVICE,
    SERVICE_BASE,
    SERVICE_VAR,
    per_region,
)
from controlplane.observability.panels.traffic import traffic_row


def _endpoints(stat: str, legend: str) -> Query:
    return Query(f"sum by (ubiq_region) (envoy_cluster_{stat}{{{SERVICE_BASE}}})", legend)


def service_detail() -> Dashboard:
    requests_row = traffic_row(
        "Requests",
        SERVICE,
        region_text="Upstream requests to the service from the Envoys of each region.",
        split="subset",
        split_text="Upstream requests per subset (empty: the whole service).",
        quality_by="ubiq_region",
        quantiles=(0.5, 0.99),
        latency_text="Upstream request time percentiles.",
    )
    bytes_row = Row(
        "Bytes",
        (
            graph(
                "Bytes received from upstream",
                "Response bytes per second, by region.",
                Query(per_region("upstream_cx_rx_bytes_total"), "{{ubiq_region}}"),
                unit="Bps",
            ),
            graph(
                "Bytes sent to upstream",
                "Request bytes per second, by region.",
                Query(per_region("upstream_cx_tx_bytes_total"), "{{ubiq_region}}"),
                unit="Bps",
            ),
        ),
    )
    resilience = Row(
        "Resilience",
        (
            graph(
                "Circuit-breaker overflows per second",
                "Requests refused by the connection pool limits (TrafficPolicy connectionPool):"
                " pending queue full, connections at the limit, retry budget spent.",
                Query(per_region("upstream_rq_pending_overflow"), "pending {{ubiq_region}}"),
                Query(per_region("upstream_cx_overflow"), "connections {{ubiq_region}}"),
                Query(per_region("upstream_rq_retry_overflow"), "retries {{ubiq_region}}"),
                unit="reqps",
            ),
            graph(
                "Outlier ejections",
                "Endpoints ejected by outlier detection: enforced ejections per second and"
                " endpoints ejected now.",
                Query(
                    per_region("outlier_detection_ejections_enforced_total"),
                    "ejections/s {{ubiq_region}}",
                ),
                _endpoints("outlier_detection_ejections_active", "ejected now {{ubiq_region}}"),
            ),
            graph(
                "Healthy endpoints",
                "Endpoints Envoy considers healthy, of all it knows, by region.",
                _endpoints("membership_healthy", "healthy {{ubiq_region}}"),
                _endpoints("membership_total", "total {{ubiq_region}}"),
                width=24,
            ),
        ),
    )
    return Dashboard(
        "ubiq-service",
        "Ubiq / Service",
        "One service, per region: rate, success, latency, bytes, circuit breakers, outlier"
        " ejections and healthy endpoints, as every Envoy in the region saw them.",
        (requests_row, bytes_row, resilience),
        (SERVICE_VAR, REGION),
        (POLICY_CHANGES,),
    )
