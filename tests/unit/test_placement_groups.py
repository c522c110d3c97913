"""Per-client-group region choices: what the GTM answers each group with, from one Decision."""

from __future__ import annotations

from controlplane.placement.engine import decide
from controlplane.placement.groups import client_latency, decide_groups
from tests.unit.placement_helpers import model, signals

LL = (
    "strategy: {type: lowestLatency, slo: {successRate: 0.99}, hysteresis: {minDwell: 30s,"
    " thresholdPercent: 10}, damping: {stickinessBonusPercent: 0}}"
)
ROWS = {
    "europe": {"ra": 10.0, "rb": 90.0, "rc": 150.0},
    "asia": {"ra": 120.0, "rb": 80.0, "rc": 15.0},
}


def test_each_group_gets_its_nearest_eligible_region() -> None:
    m = model(LL)
    d = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 10), "rb": (1, 20), "rc": (1, 30)}))
    out = decide_groups(m, d, ["europe", "asia", "default"], ROWS, now=0)
    assert out["europe"].regions == (("ra", 100),)
    assert out["asia"].regions == (("rc", 100),)
    assert out["default"].regions == d.active_regions  # no row: the service decision
    assert "asia latency: rc 15.0ms < rb 80.0ms < ra 120.0ms" in out["asia"].reason.details[0]


def test_a_region_the_decision_left_is_left_by_every_group_at_once() -> None:
    m = model(LL)
    d0 = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 10), "rb": (1, 20), "rc": (1, 30)}))
    g0 = decide_groups(m, d0, ["europe"], ROWS, now=0)
    d1 = decide(m, "web", now=1, signals=signals(1, {"ra": (0.2, 10)}), previous=d0)
    g1 = decide_groups(m, d1, ["europe"], ROWS, now=1, previous=g0)
    assert g1["europe"].regions == (("rb", 100),)
    assert g1["europe"].reason.rule == "leave"


def test_group_choices_are_damped_like_the_engine() -> None:
    m = model(LL)
    d = decide(m, "web", now=0)
    g0 = decide_groups(m, d, ["europe"], ROWS, now=0)
    assert g0["europe"].regions == (("ra", 100),)
    closer = {"europe": {"ra": 10.0, "rb": 5.0, "rc": 150.0}}
    early = decide_groups(m, d, ["europe"], closer, now=10, previous=g0)["europe"]
    assert early.regions == (("ra", 100),) and early.reason.rule == "hold.dwell"
    later = decide_groups(m, d, ["europe"], closer, now=31, previous=g0)["europe"]
    assert later.regions == (("rb", 100),) and later.since == 31
    small = {"europe": {"ra": 10.0, "rb": 9.5, "rc": 150.0}}
    held = decide_groups(m, d, ["europe"], small, now=31, previous=g0)["europe"]
    assert held.regions == (("ra", 100),) and held.reason.rule == "hold.hysteresis"


def test_other_strategies_answer_every_group_with_the_decision() -> None:
    m = model("clusters: [a, b]\nstrategy: {type: static, weights: {a: 3, b: 1}}")
    d = decide(m, "web", now=0)
    out = decide_groups(m, d, ["europe", "asia"], ROWS, now=0)
    assert out["europe"].regions == out["asia"].regions == (("ra", 75), ("rb", 25))


def test_residency_bounds_group_answers() -> None:
    m = model("residency: {regions: [rb, rc]}\n" + LL)
    d = decide(m, "web", now=0)
    out = decide_groups(m, d, ["europe"], ROWS, now=0)
    assert out["europe"].regions == (("rb", 100),)


def test_measured_client_latency_overrides_the_typed_matrix() -> None:
    merged = client_latency({("europe", "rb"): 4.0}, {"europe": {"ra": 10, "rb": 90}})
    assert merged == {"europe": {"ra": 10, "rb": 4.0}}


def test_an_unchanged_choice_is_kept_as_is() -> None:
    m = model(LL)
    d = decide(m, "web", now=0)
    g0 = decide_groups(m, d, ["europe"], ROWS, now=0)
    again = decide_groups(m, d, ["europe"], {"europe": dict(ROWS["europe"])}, now=5, previous=g0)
    assert again["europe"] is g0["europe"]
