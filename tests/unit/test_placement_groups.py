"""Per-client-group region choices: what the GTM answers each group with, from one Decision."""

from __future__ import annotations

from controlplane.placement.decision import Decision
from controlplane.placement.engine import decide
from controlplane.placement.groups import (
    GroupChoice,
    client_latency,
    decide_groups,
    next_group_wake,
)
from controlplane.policy.model import Model
from tests.unit.placement_helpers import model, signals

LL = (
    "strategy: {type: lowestLatency, slo: {successRate: 0.99}, hysteresis: {minDwell: 30s,"
    " thresholdPercent: 10}, damping: {stickinessBonusPercent: 0}}"
)
ROWS = {
    "europe": {"ra": 10.0, "rb": 90.0, "rc": 150.0},
    "asia": {"ra": 120.0, "rb": 80.0, "rc": 15.0},
}


def test_each_group_gets_its_nearest_serving_region() -> None:
    m = model("spread: {minRegions: 3}\n" + LL)
    d = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 10), "rb": (1, 20), "rc": (1, 30)}))
    assert set(d.weights) == {"ra", "rb", "rc"}
    out = decide_groups(m, d, ["europe", "asia", "default"], ROWS, now=0)
    assert out["europe"].regions == (("ra", 100),)
    assert out["europe"].fallback == ("rb", "rc")  # the other serving regions, nearest first
    assert out["asia"].regions == (("rc", 100),)
    assert out["default"].regions == d.active_regions  # no row: the service decision
    assert "asia latency: rc 15.0ms < rb 80.0ms < ra 120.0ms" in out["asia"].reason.details[0]


def test_a_group_is_answered_only_regions_the_decision_serves() -> None:
    """What Envoy sends traffic to bounds what DNS answers: asia's nearest region (rc) gets no
    weight in the Decision, so asia is answered the Decision's region."""
    m = model(LL)
    d = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 10), "rb": (1, 20), "rc": (1, 30)}))
    assert dict(d.weights) == {"ra": 100}
    out = decide_groups(m, d, ["europe", "asia"], ROWS, now=0)
    assert out["asia"].regions == out["europe"].regions == (("ra", 100),)


def test_a_region_the_decision_left_is_left_by_every_group_at_once() -> None:
    m = model(LL)
    d0 = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 10), "rb": (1, 20), "rc": (1, 30)}))
    g0 = decide_groups(m, d0, ["europe"], ROWS, now=0)
    d1 = decide(m, "web", now=1, signals=signals(1, {"ra": (0.2, 10)}), previous=d0)
    assert "ra" not in d1.weights
    g1 = decide_groups(m, d1, ["europe"], ROWS, now=1, previous=g0)
    assert g1["europe"].regions == ((next(iter(d1.weights)), 100),)
    assert g1["europe"].reason.rule == "leave"


def test_group_choices_are_damped_like_the_engine() -> None:
    m = model(LL)
    d = decide(m, "web", now=0)  # no signals: every eligible region serves (equal shares)
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


# --- the GTM's damping, moved here from gtm/steering.py (one place for it) ---------------------

TWO = (
    "clusters: [a, b]\nstrategy: {{type: static, hysteresis: {{minDwell: {dwell}s,"
    " thresholdPercent: 10}}, damping: {{stickinessBonusPercent: 0}}}}"
)


def two(dwell: int = 30) -> Model:
    return model(TWO.format(dwell=dwell))


def choose(
    m: Model, d: Decision, row: dict[str, float], now: float, prev: GroupChoice | None = None
) -> GroupChoice:
    previous = {"eu": prev} if prev is not None else None
    return decide_groups(m, d, ["eu"], {"eu": row}, now=now, previous=previous, by_latency=True)[
        "eu"
    ]


def test_hysteresis_keeps_the_previous_region_for_a_small_gain() -> None:
    m = two()
    d = decide(m, "web", now=0)
    first = choose(m, d, {"ra": 100.0, "rb": 200.0}, 0)
    assert first.regions == (("ra", 100),)
    kept = choose(m, d, {"ra": 100.0, "rb": 95.0}, 100, first)
    assert kept.regions == (("ra", 100),) and kept.since == 0
    assert kept.reason.rule == "hold.hysteresis"
    assert "rb better by 5.0%, less than thresholdPercent 10" in " ".join(kept.reason.details)


def test_hysteresis_switches_for_a_large_gain() -> None:
    m = two()
    d = decide(m, "web", now=0)
    first = choose(m, d, {"ra": 100.0, "rb": 200.0}, 0)
    moved = choose(m, d, {"ra": 100.0, "rb": 80.0}, 100, first)
    assert moved.regions == (("rb", 100),) and moved.since == 100
    assert moved.reason.rule == "lowestLatency"
    assert "switching from ra to rb" in moved.reason.details


def test_minimum_dwell_holds_a_better_region_until_it_passes() -> None:
    m = two()
    d = decide(m, "web", now=1000)
    first = choose(m, d, {"ra": 100.0, "rb": 200.0}, 1000)
    held = choose(m, d, {"ra": 100.0, "rb": 10.0}, 1029.5, first)
    assert held.regions == (("ra", 100),) and held.since == 1000
    assert held.reason.rule == "hold.dwell" and held.held_until == 1030.0
    assert "holding ra until 1030.0 (minDwell 30s)" in " ".join(held.reason.details)
    assert next_group_wake([held]) == 1030.0  # the runtime decides again then
    moved = choose(m, d, {"ra": 100.0, "rb": 10.0}, 1030.0, held)
    assert moved.regions == (("rb", 100),) and moved.since == 1030.0
    assert moved.held_until is None


def test_minimum_dwell_is_not_shortened_by_unrelated_rebuilds() -> None:
    m = two()
    g = choose(m, decide(m, "web", now=1000), {"ra": 10.0, "rb": 100.0}, 1000)
    assert g.regions == (("ra", 100),)
    # many rebuilds (other names' health, model reloads: a new Decision object each time) at
    # the same time and a bit later
    for now in [1000.0] * 5 + [1010.0, 1020.0, 1029.9]:
        g = choose(m, decide(m, "web", now=now), {"ra": 100.0, "rb": 10.0}, now, g)
        assert g.regions == (("ra", 100),), now
        assert g.since == 1000.0
    g = choose(m, decide(m, "web", now=1030), {"ra": 100.0, "rb": 10.0}, 1030.0, g)
    assert g.regions == (("rb", 100),)


def test_clock_stepping_back_does_not_hold_the_region() -> None:
    m = two()
    first = choose(m, decide(m, "web", now=1000), {"ra": 100.0, "rb": 200.0}, 1000)
    back = choose(m, decide(m, "web", now=900), {"ra": 100.0, "rb": 10.0}, 900, first)
    assert back.regions == (("rb", 100),)


def test_health_overrides_the_dwell_and_the_band() -> None:
    m = two(dwell=3600)
    d0 = decide(m, "web", now=1000)
    first = choose(m, d0, {"ra": 99.0, "rb": 100.0}, 1000)
    assert first.regions == (("ra", 100),)
    d1 = decide(m, "web", now=1001, health={"a": False}, previous=d0)
    assert dict(d1.weights) == {"rb": 100}  # the engine leaves an unhealthy region at once
    left = choose(m, d1, {"ra": 99.0, "rb": 100.0}, 1001, first)
    assert left.regions == (("rb", 100),) and left.since == 1001
    assert left.reason.rule == "leave"


def test_the_decisions_own_dwell_holds_the_group_and_says_until_when() -> None:
    """A region that comes back is held out by the Decision's dwell; the group's choice says
    until when, so the GTM can explain it and decide again then."""
    m = two(dwell=45)
    d0 = decide(m, "web", now=1000, health={"a": True, "b": False})
    g0 = choose(m, d0, {"ra": 100.0, "rb": 10.0}, 1000)
    assert g0.regions == (("ra", 100),)
    d1 = decide(m, "web", now=1000.005, health={"a": True, "b": True}, previous=d0)
    assert d1.reason.rule == "hold.dwell" and dict(d1.weights) == {"ra": 100}
    g1 = choose(m, d1, {"ra": 100.0, "rb": 10.0}, 1000.005, g0)
    assert g1.regions == (("ra", 100),) and g1.held_until == 1045.0
    assert any(line.startswith("service decision (hold.dwell)") for line in g1.reason.details)
    d2 = decide(m, "web", now=1045.0, health={"a": True, "b": True}, previous=d1)
    assert d2.weights.get("rb", 0) > 0
    g2 = choose(m, d2, {"ra": 100.0, "rb": 10.0}, 1045.0, g1)
    assert g2.regions == (("rb", 100),) and g2.held_until is None
