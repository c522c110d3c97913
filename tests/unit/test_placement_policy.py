"""The Placement and Canary fields the feedback loop added: defaults, ranges, errors with file:line."""

from __future__ import annotations

from controlplane.policy.canary import Analysis
from controlplane.policy.placement import Damping, Spread, Strategy
from tests.support.policy import doc, load, problems


def test_every_damping_default_is_explicit() -> None:
    d = Damping()
    assert (d.ewma_alpha, d.min_requests, d.max_weight_change_percent) == (0.5, 20, 25.0)
    assert (d.step_interval, d.stickiness_bonus_percent) == (5000, 5.0)
    assert Strategy().latency_percentile == "p99"
    assert (Spread().min_regions, Spread().max_share_percent) == (1, 100.0)
    rel = Analysis().relative
    assert (rel.max_success_rate_drop, rel.max_latency_increase_percent) == (None, None)


def test_damping_fields_are_read_from_yaml() -> None:
    m = load(
        doc(
            "Placement",
            "web",
            "service: web\nstrategy: {type: capacity, latencyPercentile: p50, damping:"
            " {ewmaAlpha: 0.2, minRequests: 5, maxWeightChangePercent: 10, stepInterval: 2s,"
            " stickinessBonusPercent: 0}}",
        )
    )
    s = m.placements["web"].spec.strategy
    assert s.type == "capacity" and s.latency_percentile == "p50"
    assert s.damping.model_dump() == {
        "ewma_alpha": 0.2,
        "min_requests": 5,
        "max_weight_change_percent": 10.0,
        "step_interval": "2s",
        "stickiness_bonus_percent": 0.0,
    }


def test_bad_damping_values_name_the_file_line_and_field() -> None:
    bad = doc("Placement", "web", "service: web\nstrategy:\n  damping: {ewmaAlpha: 0}")
    (msg,) = problems(bad)
    assert msg.startswith("extra0.yaml:7: spec.strategy.damping.ewmaAlpha")
    bad = doc(
        "Placement", "web", "service: web\nstrategy: {damping: {maxWeightChangePercent: 0.5}}"
    )
    assert "maxWeightChangePercent" in problems(bad)[0]
    bad = doc("Placement", "web", "service: web\nstrategy: {damping: {stepInterval: 0s}}")
    assert "stepInterval" in problems(bad)[0]


def test_max_share_needs_enough_regions() -> None:
    bad = doc("Placement", "web", "service: web\nspread: {maxSharePercent: 40}")
    (msg,) = problems(bad)
    assert "spec.spread" in msg
    assert "maxSharePercent 40 needs traffic in at least 3 regions" in msg
    load(doc("Placement", "web", "service: web\nspread: {minRegions: 3, maxSharePercent: 40}"))


def test_capacity_takes_no_static_weights() -> None:
    bad = doc("Placement", "web", "service: web\nstrategy: {type: capacity, weights: {eu-west: 1}}")
    assert "weights apply to strategy static, not capacity" in problems(bad)[0]


def test_canary_relative_thresholds_are_checked() -> None:
    route = doc(
        "RoutePolicy",
        "web",
        "hosts: [web.example]\nhttp:\n- route: [{service: web, subset: v1, weight: 90},"
        " {service: web, subset: v2, weight: 10}]",
    )
    bad = doc(
        "Canary",
        "c",
        "service: web\nroutePolicy: web\nstableSubset: v1\ncanarySubset: v2\n"
        "analysis: {relative: {maxSuccessRateDrop: 2}}",
    )
    assert "spec.analysis.relative.maxSuccessRateDrop" in problems(route, bad)[0]
