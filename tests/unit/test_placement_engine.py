"""The placement engine: strategies, constraints, stability rules and reasons (simulated clock)."""

from __future__ import annotations

import json

from controlplane.placement.decision import Decision, compiler_decisions, explain
from controlplane.placement.engine import decide, decide_all, next_wakeup
from controlplane.xds.compiler.effective import ModelIndex
from tests.unit.placement_helpers import model, signals

GOOD = (1.0, 50.0)


def run(m, ticks, *, health=None, start=None):  # type: ignore[no-untyped-def]
    """Feed (now, signals) ticks through decide, returning every decision."""
    out: list[Decision] = []
    prev = start
    for now, s in ticks:
        prev = decide(m, "web", now=now, signals=s, health=health, previous=prev)
        out.append(prev)
    return out


# --- strategies ------------------------------------------------------------------------------


def test_no_placement_spreads_equally_over_the_clusters_with_endpoints() -> None:
    d = decide(model(), "web", now=0)
    assert dict(d.weights) == {"ra": 25, "rb": 25, "rc": 25, "rd": 25}
    assert d.reason.rule == "static"
    assert sum(p.weight for p in d.placed) == 100


def test_static_weights_follow_the_document() -> None:
    d = decide(
        model("clusters: [a, b]\nstrategy: {type: static, weights: {a: 3, b: 1}}"), "web", now=0
    )
    assert dict(d.weights) == {"ra": 75, "rb": 25}
    assert {p.name: p.weight for p in d.placed} == {"a": 75, "b": 25}


def test_static_unhealthy_region_is_left_at_once_and_comes_back_in_steps_after_the_dwell() -> None:
    m = model(
        "clusters: [a, b]\nstrategy: {type: static, weights: {a: 1, b: 1},"
        " hysteresis: {minDwell: 30s}, damping: {maxWeightChangePercent: 25, stepInterval: 5s}}"
    )
    d0 = decide(m, "web", now=0)
    d1 = decide(m, "web", now=1, health={"b": False}, previous=d0)
    assert dict(d1.weights) == {"ra": 100}
    assert d1.reason.rule == "leave"
    assert d1.region("rb").verdict == "unhealthy"  # type: ignore[union-attr]
    d2 = decide(m, "web", now=10, previous=d1)  # healthy again, dwell not over
    assert d2.reason.rule == "hold.dwell"
    assert dict(d2.weights) == {"ra": 100}
    assert d2.next_decision_at == d2.dwell_until == 31.0
    d3 = decide(m, "web", now=31, previous=d2)
    assert dict(d3.weights) == {"ra": 75, "rb": 25}
    assert d3.reason.rule == "step"
    assert d3.next_decision_at == 36.0
    d4 = decide(m, "web", now=33, previous=d3)  # before the next step
    assert dict(d4.weights) == {"ra": 75, "rb": 25}
    d5 = decide(m, "web", now=36, previous=d4)
    assert dict(d5.weights) == {"ra": 50, "rb": 50}
    assert d5.reason.rule == "static"
    assert d5.next_decision_at is None


def test_failover_uses_the_first_eligible_region_in_order() -> None:
    m = model("strategy: {type: failover, order: [b, a, c]}")
    d = decide(m, "web", now=0)
    assert dict(d.weights) == {"rb": 100}
    assert [(p.name, p.priority) for p in d.placed if p.weight] == [("b", 0)]
    assert [p.name for p in sorted(d.placed, key=lambda p: p.priority)] == ["b", "a", "c"]
    down = decide(m, "web", now=1, health={"b": False}, previous=d)
    assert dict(down.weights) == {"ra": 100}


def test_lowest_latency_picks_the_fastest_region_by_p99() -> None:
    m = model("strategy: {type: lowestLatency}")
    d = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 90), "rb": (1, 40), "rc": (1, 70)}))
    assert dict(d.weights) == {"rb": 100}
    assert "rb 40.0ms < rc 70.0ms < ra 90.0ms" in d.reason.details[0]


def test_lowest_latency_by_p50_when_asked() -> None:
    m = model("strategy: {type: lowestLatency, latencyPercentile: p50}")
    s = signals(0, {"ra": (1, 90), "rb": (1, 40)})
    d = decide(m, "web", now=0, signals=s)
    assert d.region("rb").latency_ms == 20.0  # type: ignore[union-attr]


def test_lowest_latency_without_data_spreads_equally_and_then_holds() -> None:
    m = model("strategy: {type: lowestLatency}")
    d = decide(m, "web", now=0, signals=signals(0, {}))
    assert dict(d.weights) == {"ra": 34, "rb": 33, "rc": 33}
    d = decide(m, "web", now=60, signals=signals(60, {"rb": (1, 10)}), previous=d)
    assert d.target == {"rb": 100}


def test_lowest_cost_keeps_the_cheap_region_while_its_slo_holds_and_leaves_when_it_breaks() -> None:
    m = model(
        "strategy: {type: lowestCost, slo: {latencyP99: 200ms, successRate: 0.99},"
        " hysteresis: {minDwell: 10s}, damping: {maxWeightChangePercent: 100}}"
    )
    d0 = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 150), "rb": (1, 20), "rc": GOOD}))
    assert dict(d0.weights) == {"ra": 100}  # cheapest (cost 1), p99 150 <= 200
    d1 = decide(m, "web", now=20, signals=signals(20, {"ra": (1, 400)}), previous=d0)
    # EWMA 0.5: (150 + 400) / 2 = 275 > 200
    assert d1.region("ra").verdict == "overLatencySlo"  # type: ignore[union-attr]
    assert dict(d1.weights) == {"rb": 100}  # next cheapest
    assert d1.reason.rule == "lowestCost"


def test_lowest_cost_leaves_at_once_on_a_success_breach() -> None:
    m = model("strategy: {type: lowestCost, slo: {successRate: 0.99}}")
    d0 = decide(m, "web", now=0, signals=signals(0, {"ra": GOOD}))
    d1 = decide(m, "web", now=1, signals=signals(1, {"ra": (0.7, 50)}), previous=d0)
    assert dict(d1.weights) == {"rb": 100}
    assert d1.reason.rule == "leave"
    assert "success 0.8500 < slo 0.99" in d1.region("ra").note  # type: ignore[union-attr]


def test_capacity_shares_are_proportional_and_a_missing_capacity_counts_as_the_smallest() -> None:
    d = decide(model("clusters: [a, b]\nstrategy: {type: capacity}"), "web", now=0)
    assert dict(d.weights) == {"ra": 25, "rb": 75}
    d = decide(model("strategy: {type: capacity}"), "web", now=0)
    assert dict(d.weights) == {"ra": 20, "rb": 60, "rc": 20}
    assert any("counted as 100" in x for x in d.reason.details)


# --- constraints -----------------------------------------------------------------------------


def test_selectors_taints_and_residency_bound_the_candidates() -> None:
    d = decide(model("clusterSelector: {matchLabels: {tier: primary}}"), "web", now=0)
    assert {r.region for r in d.regions} == {"ra", "rb"}  # d is tainted, c is not primary
    tolerated = "clusterSelector: {matchLabels: {tier: primary}}\ntolerations: [{key: maintenance, operator: Exists}]"
    assert {r.region for r in decide(model(tolerated), "web", now=0).regions} == {"ra", "rb", "rd"}
    resident = decide(model("residency: {regions: [rb]}"), "web", now=0)
    assert {p.region for p in resident.placed} == {"rb"}


def test_spread_min_regions_picks_that_many() -> None:
    m = model("spread: {minRegions: 2}\nstrategy: {type: lowestLatency}")
    d = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 90), "rb": (1, 40), "rc": (1, 70)}))
    assert dict(d.weights) == {"rb": 50, "rc": 50}


def test_max_share_caps_a_region_and_hands_the_rest_to_the_others() -> None:
    m = model("spread: {minRegions: 2, maxSharePercent: 60}\nstrategy: {type: capacity}")
    d = decide(m, "web", now=0)  # raw 20/60/20 is within the cap
    assert max(d.weights.values()) <= 60
    m = model(
        "clusters: [a, b]\nspread: {minRegions: 2, maxSharePercent: 60}\nstrategy: {type: capacity}"
    )
    assert dict(decide(m, "web", now=0).weights) == {"ra": 40, "rb": 60}


def test_max_share_gives_way_when_too_few_regions_are_left() -> None:
    m = model("clusters: [a, b]\nspread: {minRegions: 2, maxSharePercent: 50}")
    d = decide(m, "web", now=0, health={"a": False})
    assert dict(d.weights) == {"rb": 100}
    assert any("cap given up" in x for x in d.reason.details)


# --- stability -------------------------------------------------------------------------------


def test_ewma_smooths_the_signal() -> None:
    m = model("strategy: {type: lowestLatency, damping: {ewmaAlpha: 0.25}}")
    d0 = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 100)}))
    d1 = decide(m, "web", now=1, signals=signals(1, {"ra": (1, 200)}), previous=d0)
    assert d1.region("ra").latency_ms == 125.0  # type: ignore[union-attr]


def test_below_min_requests_a_region_is_not_judged() -> None:
    m = model(
        "strategy: {type: lowestLatency, slo: {successRate: 0.99}, damping: {minRequests: 50}}"
    )
    d0 = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 10), "rb": (1, 50)}))
    d1 = decide(m, "web", now=1, signals=signals(1, {"ra": (0.0, 10)}, requests=10), previous=d0)
    assert dict(d1.weights) == {"ra": 100}
    assert not d1.region("ra").judged  # type: ignore[union-attr]
    assert d1.region("ra").success_rate == 1.0  # type: ignore[union-attr]


def test_hysteresis_keeps_the_region_for_a_small_gain_and_dwell_for_a_large_one() -> None:
    m = model(
        "strategy: {type: lowestLatency, hysteresis: {minDwell: 30s, thresholdPercent: 10},"
        " damping: {ewmaAlpha: 1, stickinessBonusPercent: 0, maxWeightChangePercent: 100}}"
    )
    d0 = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 100), "rb": (1, 120)}))
    assert dict(d0.weights) == {"ra": 100}
    small = decide(
        m, "web", now=40, signals=signals(40, {"ra": (1, 100), "rb": (1, 95)}), previous=d0
    )
    assert small.reason.rule == "hold.hysteresis"
    assert dict(small.weights) == {"ra": 100}
    big = decide(
        m, "web", now=41, signals=signals(41, {"ra": (1, 100), "rb": (1, 50)}), previous=d0
    )
    assert dict(big.weights) == {"rb": 100}
    early = decide(
        m, "web", now=10, signals=signals(10, {"ra": (1, 100), "rb": (1, 50)}), previous=d0
    )
    assert early.reason.rule == "hold.dwell"
    assert early.next_decision_at == 30.0
    assert dict(early.weights) == {"ra": 100}


def test_stickiness_bonus_favours_the_current_region() -> None:
    m = model(
        "strategy: {type: lowestLatency, hysteresis: {minDwell: 0s, thresholdPercent: 0},"
        " damping: {ewmaAlpha: 1, stickinessBonusPercent: 20, maxWeightChangePercent: 100,"
        " stepInterval: 1ms}}"
    )
    d0 = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 100), "rb": (1, 120)}))
    d1 = decide(m, "web", now=1, signals=signals(1, {"ra": (1, 100), "rb": (1, 85)}), previous=d0)
    assert dict(d1.weights) == {"ra": 100}  # 100 x 0.8 = 80 < 85
    d2 = decide(m, "web", now=2, signals=signals(2, {"ra": (1, 100), "rb": (1, 75)}), previous=d1)
    assert dict(d2.weights) == {"rb": 100}


def test_weight_changes_are_capped_per_step() -> None:
    m = model(
        "strategy: {type: lowestLatency, hysteresis: {minDwell: 0s},"
        " damping: {ewmaAlpha: 1, maxWeightChangePercent: 40, stepInterval: 2s}}"
    )
    ticks = [(t, signals(t, {"ra": (1, 100 if t == 0 else 300), "rb": (1, 200)})) for t in range(8)]
    ws = [dict(d.weights) for d in run(m, ticks)]
    assert ws[0] == {"ra": 100}
    assert ws[1] == {"ra": 100}  # 1 s after the last change: waits for stepInterval
    assert ws[2] == {"ra": 60, "rb": 40}
    assert ws[3] == {"ra": 60, "rb": 40}
    assert ws[4] == {"ra": 20, "rb": 80}
    assert ws[6] == {"rb": 100}


def test_stale_signals_hold_the_previous_decision_and_say_so() -> None:
    m = model("strategy: {type: lowestLatency, hysteresis: {minDwell: 0s}}")
    d0 = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 100), "rb": (1, 120)}))
    d1 = decide(m, "web", now=5, signals=signals(5, {"rb": (1, 1)}, stale=True), previous=d0)
    assert d1.stale and d1.reason.rule == "hold.stale"
    assert dict(d1.weights) == {"ra": 100}
    assert "stale" in d1.reason.summary
    # health still counts while signals are stale
    d2 = decide(
        m, "web", now=6, signals=signals(6, {}, stale=True), health={"a": False}, previous=d1
    )
    assert "ra" not in d2.weights and sum(d2.weights.values()) == 100


def test_slo_breach_left_at_once_probation_after_the_dwell_then_gradual_return() -> None:
    m = model(
        "strategy: {type: lowestLatency, slo: {successRate: 0.99}, hysteresis: {minDwell: 20s},"
        " damping: {maxWeightChangePercent: 50, stepInterval: 5s}}"
    )
    d0 = decide(m, "web", now=0, signals=signals(0, {"ra": (1, 10), "rb": (1, 50)}))
    d1 = decide(m, "web", now=1, signals=signals(1, {"ra": (0.5, 10), "rb": (1, 50)}), previous=d0)
    assert dict(d1.weights) == {"rb": 100} and d1.reason.rule == "leave"
    assert d1.breached == {"ra": 1}
    assert d1.next_decision_at == 21.0
    d2 = decide(m, "web", now=10, signals=signals(10, {"rb": (1, 50)}), previous=d1)
    assert d2.region("ra").verdict == "sloBreach"  # type: ignore[union-attr]
    d3 = decide(m, "web", now=21, signals=signals(21, {"rb": (1, 50)}), previous=d2)
    assert d3.region("ra").verdict == "probation"  # type: ignore[union-attr]
    assert dict(d3.weights) == {"ra": 50, "rb": 50}
    # the region measures well again: its old bad samples do not count
    d4 = decide(m, "web", now=26, signals=signals(26, {"ra": (1, 10), "rb": (1, 50)}), previous=d3)
    assert dict(d4.weights) == {"ra": 100}
    assert "ra" not in d4.breached


def test_recovery_must_clear_the_hysteresis_band() -> None:
    m = model(
        "strategy: {type: static, slo: {successRate: 0.99}, hysteresis: {thresholdPercent: 50},"
        " damping: {ewmaAlpha: 1}}"
    )
    d0 = decide(m, "web", now=0, signals=signals(0, {"ra": (0.98, 10)}))
    assert "ra" in d0.breached
    d1 = decide(m, "web", now=1, signals=signals(1, {"ra": (0.992, 10)}), previous=d0)
    assert d1.region("ra").verdict == "sloBreach"  # 0.992 < 1 - 0.01 x 0.5 = 0.995
    d2 = decide(m, "web", now=2, signals=signals(2, {"ra": (0.996, 10)}), previous=d1)
    assert d2.region("ra").verdict != "sloBreach"


def test_every_region_excluded_serves_every_healthy_region() -> None:
    m = model("clusters: [a, b]\nstrategy: {type: static, slo: {successRate: 0.99}}")
    d = decide(m, "web", now=0, signals=signals(0, {"ra": (0.5, 10), "rb": (0.5, 10)}))
    assert d.reason.rule == "allExcluded"
    assert dict(d.weights) == {"ra": 50, "rb": 50}
    down = decide(m, "web", now=1, health={"a": False, "b": False}, previous=d)
    assert sum(down.weights.values()) == 100


# --- reasons and the compiler seam ------------------------------------------------------------


def test_a_decision_explains_itself() -> None:
    m = model("strategy: {type: lowestLatency, slo: {successRate: 0.99}}")
    d = decide(m, "web", now=0, signals=signals(0, {"ra": (0.9, 10), "rb": (1, 50)}))
    text = explain(d)
    assert "ra: sloBreach" in text and "success 0.9000 < slo 0.99" in text
    data = json.loads(json.dumps(d.as_dict()))
    assert data["reason"]["thresholds"]["sloSuccessRate"] == 0.99
    assert data["reason"]["thresholds"]["minDwellS"] == 30.0
    assert {r["region"] for r in data["regions"]} == {"ra", "rb", "rc"}


def test_decisions_feed_the_xds_compiler_unchanged() -> None:
    m = model("strategy: {type: failover, order: [b, a]}")
    decisions = decide_all(m, now=0)
    index = ModelIndex(m, compiler_decisions(decisions))
    assert index.placed("web") == decisions["web"].placed
    assert [p.name for p in index.placed("web") if p.weight > 0] == ["b"]


def test_no_candidates() -> None:
    d = decide(model("residency: {regions: [rd]}"), "web", now=0)
    assert d.reason.rule == "noCandidates" and d.placed == ()


def test_unchanged_inputs_keep_the_decision_object_and_timers_still_fire() -> None:
    m = model("strategy: {type: lowestLatency, hysteresis: {minDwell: 30s}}")
    s0 = signals(0, {"ra": (1, 100), "rb": (1, 120)})
    d0 = decide_all(m, now=0, signals=s0)
    same = decide_all(m, now=1, signals=signals(1, {"ra": (1, 100), "rb": (1, 120)}), previous=d0)
    assert same["web"] is d0["web"]
    moved = decide_all(m, now=2, signals=signals(2, {"ra": (1, 100), "rb": (1, 20)}), previous=d0)
    assert moved["web"] is not d0["web"] and moved["web"].reason.rule == "hold.dwell"
    # no new signals, but the dwell ends: the runtime re-decides at next_decision_at
    due = moved["web"].next_decision_at
    assert due == 30.0
    held = signals(2, {"ra": (1, 100), "rb": (1, 20)})
    after = decide_all(m, now=due, signals=held, previous=moved)
    assert after["web"].target == {"rb": 100}
    assert decide_all(m, now=3, signals=held, previous=moved)["web"] is moved["web"]


def test_a_changed_placement_is_adopted_without_the_dwell_but_in_steps() -> None:
    before = model("clusters: [a, b]\nstrategy: {type: static, weights: {a: 1, b: 1}}")
    after = model("clusters: [a, b]\nstrategy: {type: static, weights: {a: 1, b: 0}}")
    d0 = decide(before, "web", now=0)
    d1 = decide(after, "web", now=10, previous=d0)
    assert d1.target == {"ra": 100}
    assert dict(d1.weights) == {"ra": 75, "rb": 25}
    assert any("Placement changed" in x for x in d1.reason.details)
    reloaded = model("clusters: [a, b]\nstrategy: {type: static, weights: {a: 1, b: 0}}")
    assert decide(reloaded, "web", now=11, previous=d1).weights == d1.weights


def test_next_wakeup_is_the_earliest_pending_timer() -> None:
    m = model(
        "clusters: [a, b]\nstrategy: {type: static, weights: {a: 1, b: 1}, hysteresis: {minDwell: 30s}}"
    )
    d0 = decide_all(m, now=0)
    assert next_wakeup(d0) is None
    d1 = decide_all(m, now=1, health={"b": False}, previous=d0)
    d2 = decide_all(m, now=2, previous=d1)  # b is back: the return waits for the dwell
    assert next_wakeup(d2) == 31.0
