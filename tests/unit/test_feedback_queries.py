"""The PromQL plan: one query per signal field, regions from zones, safe against odd inputs."""

from __future__ import annotations

from dataclasses import fields

import pytest

from controlplane.feedback.queries import QueryError, build_plan, zones_by_region
from controlplane.feedback.signals import RegionSignal

ZONES = {"eu-west-1a": "eu-west", "eu-west-1b": "eu-west", "us-west-1a": "us-west"}


def test_one_query_per_signal_field() -> None:
    plan = build_plan(ZONES)
    assert set(plan.queries) == {f.name for f in fields(RegionSignal)}
    assert plan.window == "10s" and plan.job == "envoy"
    assert 'up{job="envoy"} == 1' in plan.freshness


def test_request_signals_map_the_upstream_zone_to_its_region() -> None:
    q = build_plan(ZONES).queries["latency_p99_ms"]
    assert q.startswith("histogram_quantile(0.99,")
    assert '"ubiq_region", "eu-west", "ubiq_to_zone", "eu-west-1a|eu-west-1b"' in q
    assert '"ubiq_region", "us-west", "ubiq_to_zone", "us-west-1a"' in q
    assert "envoy_cluster_zone_upstream_rq_time_bucket" in q and "le)" in q


def test_proxy_signals_keep_the_proxy_region() -> None:
    plan = build_plan(ZONES)
    for name in ("active_connections", "healthy_endpoint_share", "outlier_ejections"):
        assert "ubiq_to_zone" not in plan.queries[name]
    overflow = plan.queries["circuit_breaker_overflows"]
    assert "upstream_rq_pending_overflow" in overflow and "upstream_cx_overflow" in overflow


def test_whole_service_and_per_subset_series() -> None:
    q = build_plan(ZONES).queries["request_rate"]
    assert "sum by (ubiq_service, ubiq_region)" in q
    assert "sum by (ubiq_service, ubiq_subset, ubiq_region)" in q
    assert 'envoy_cluster_name!~"ubiq_.*"' in q  # Ubiq's own xDS cluster is not a service


def test_success_rate_counts_non_5xx_and_zero_over_zero_stays_nan() -> None:
    q = build_plan(ZONES).queries["success_rate"]
    assert 'envoy_response_code_class!="5"' in q
    assert "* 0)" in q  # only-5xx: 0, and 0/0*0 is still NaN (no data)


def test_window_and_job_are_honoured() -> None:
    plan = build_plan(ZONES, window="30s", job="edge")
    assert "[30s]" in plan.queries["request_rate"]
    assert 'job="edge"' in plan.queries["request_rate"]
    assert plan.queries["requests"].endswith("* 30")


@pytest.mark.parametrize("window", ["10", "1.5s", "10s]", "", "5d"])
def test_bad_windows_are_refused(window: str) -> None:
    with pytest.raises(QueryError, match="window"):
        build_plan(ZONES, window=window)


@pytest.mark.parametrize("zone", ['a"b', "a|b", "A", "", "a.b"])
def test_zone_names_that_could_break_the_query_are_refused(zone: str) -> None:
    with pytest.raises(QueryError, match="DNS labels"):
        build_plan({zone: "eu"})


def test_zones_from_clusters() -> None:
    clusters = {
        "eu-1": ("eu-west", "eu-west-1a"),
        "eu-2": ("eu-west", "eu-west-1a"),
        "edge": ("us-west", None),  # no zone: Envoy keeps no zone stats for it
    }
    assert zones_by_region(clusters) == {"eu-west-1a": "eu-west"}


def test_a_zone_in_two_regions_is_refused() -> None:
    with pytest.raises(QueryError, match="zone 'a' is in regions"):
        zones_by_region({"x": ("eu", "a"), "y": ("us", "a")})


def test_zones_from_a_model() -> None:
    from controlplane.feedback.queries import zones_from_model
    from controlplane.policy.loader import load_texts

    model = load_texts(
        [
            (
                "c.yaml",
                """apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: eu-1}
spec: {region: eu-west, zone: eu-west-1a}
---
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: us-1}
spec: {region: us-west}
""",
            )
        ]
    )
    assert zones_from_model(model) == {"eu-west-1a": "eu-west"}
