"""Ubiq / Service: one service per region -- rate, success, latency, bytes, resilience."""

from __future__ import annotations

from controlplane.observability.panels.model import Dashboard, Query, Row, graph
from controlplane.observability.panels.promql import (
    POLICY_CHANGES,
    REGION,
    SERVICE,
    SERVICE_BASE,
    SERVICE_VAR,
    latency,
    per_region,
    requests,
    success_ratio,
)


def _endpoints(stat: str, legend: str) -> Query:
    return Query(f"sum by (ubiq_region) (envoy_cluster_{stat}{{{SERVICE_BASE}}})", legend)


def service_detail() -> Dashboard:
    requests_row = Row(
        "Requests",
        (
            graph(
                "Requests per second by region",
                "Upstream requests to the service from the Envoys of each region.",
                Query(requests(SERVICE, "ubiq_region"), "{{ubiq_region}}"),
                unit="reqps",
            ),
            graph(
                "Requests per second by subset",
                "Upstream requests per subset (empty: the whole service).",
                Query(requests(SERVICE, "subset", "subset"), "{{subset}}"),
                unit="reqps",
            ),
            graph(
                "Success rate by region",
                "Share of upstream responses that were not 5xx.",
                Query(success_ratio(SERVICE, "ubiq_region"), "{{ubiq_region}}"),
                unit="percentunit",
                min=0,
                max=1,
            ),
            graph(
                "Latency p50 and p99 by region",
                "Upstream request time percentiles.",
                Query(latency(0.5, SERVICE, "ubiq_region"), "p50 {{ubiq_region}}"),
                Query(latency(0.99, SERVICE, "ubiq_region"), "p99 {{ubiq_region}}"),
                unit="ms",
            ),
        ),
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
