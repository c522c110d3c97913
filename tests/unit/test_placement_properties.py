"""Properties of the placement engine over generated signals, health and clocks."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.placement.decision import Decision
from controlplane.placement.engine import decide
from controlplane.placement.groups import decide_groups
from controlplane.placement.weights import apportion, cap_shares, step_towards
from tests.unit.placement_helpers import REGIONS, model, signals

CLUSTER_REGION = {"a": "ra", "b": "rb", "c": "rc", "d": "rd"}

PLACEMENTS = (
    "strategy: {type: static}",
    "clusters: [a, b, c]\nstrategy: {type: static, weights: {a: 5, b: 1, c: 0}}",
    "strategy: {type: failover, order: [c, a, b]}",
    "strategy: {type: lowestLatency, slo: {successRate: 0.99}}",
    "spread: {minRegions: 2, maxSharePercent: 60}\nstrategy: {type: lowestLatency}",
    "strategy: {type: lowestCost, slo: {latencyP99: 100ms, successRate: 0.95}}",
    "strategy: {type: capacity}\nspread: {minRegions: 2, maxSharePercent: 50}",
    "residency: {regions: [ra, rb]}\nstrategy: {type: lowestLatency, slo: {successRate: 0.9}}",
    "tolerations: [{key: maintenance, operator: Exists}]\nstrategy: {type: capacity}",
)
MODELS = [model(p) for p in PLACEMENTS]


@st.composite
def tick(
    draw: st.DrawFn,
) -> tuple[float, dict[str, bool], dict[str, tuple[float, float]], bool, int]:
    step = draw(st.floats(0.1, 20, allow_nan=False))
    health = {c: draw(st.booleans()) or draw(st.booleans()) for c in CLUSTER_REGION}
    regions = {
        r: (draw(st.sampled_from((1.0, 0.999, 0.98, 0.9, 0.5))), draw(st.floats(1, 400)))
        for r in draw(st.lists(st.sampled_from(REGIONS), unique=True))
    }
    return (
        step,
        health,
        regions,
        draw(st.booleans()) and draw(st.booleans()),
        draw(st.sampled_from((0, 5, 100))),
    )


def check(d: Decision, health: dict[str, bool], residency: set[str] | None) -> None:
    assert sum(d.weights.values()) == 100 or not d.placed
    assert all(w > 0 for w in d.weights.values())
    assert sum(p.weight for p in d.placed if p.priority == 0) == sum(d.weights.values())
    assert all(p.weight == 0 for p in d.placed if p.priority > 0)
    if residency is not None:
        assert {p.region for p in d.placed} <= residency
    down_regions = {r.region for r in d.regions if not any(health.get(c, True) for c in r.clusters)}
    if len(down_regions) < len(d.regions):  # something is up: nothing down keeps traffic
        assert not down_regions & set(d.weights)
        assert all(p.weight == 0 for p in d.placed if not health.get(p.name, True))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(len(MODELS))), st.lists(tick(), min_size=1, max_size=25))
def test_weights_sum_residency_holds_and_down_regions_never_keep_traffic(
    which: int,
    ticks: list[tuple[float, dict[str, bool], dict[str, tuple[float, float]], bool, int]],
) -> None:
    m = MODELS[which]
    residency = {"ra", "rb"} if "residency" in PLACEMENTS[which] else None
    now, prev = 1000.0, None
    for step, health, regions, stale, requests in ticks:
        now += step
        s = signals(now, regions, stale=stale, requests=requests)
        prev = decide(m, "web", now=now, signals=s, health=health, previous=prev)
        check(prev, health, residency)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.5, 5), st.floats(-12, 12), st.floats(-12, 12)),
        min_size=5,
        max_size=120,
    ),
    st.sampled_from((10, 30, 60)),
)
def test_a_latency_hovering_at_the_threshold_changes_the_target_at_most_once_per_dwell(
    noise: list[tuple[float, float, float]], dwell: int
) -> None:
    """Two regions whose latencies hover around each other, across the hysteresis band."""
    m = model(
        f"clusters: [a, b]\nstrategy: {{type: lowestLatency, hysteresis: {{minDwell: {dwell}s,"
        " thresholdPercent: 10}, damping: {ewmaAlpha: 1}}"
    )
    now, prev, changes = 0.0, None, []
    for step, na, nb in noise:
        now += step
        s = signals(now, {"ra": (1.0, 100 + na), "rb": (1.0, 100 + nb)})
        d = decide(m, "web", now=now, signals=s, previous=prev)
        if prev is not None and dict(d.target) != dict(prev.target):
            changes.append(now)
        prev = d
    assert all(b - a >= dwell for a, b in itertools.pairwise(changes))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.5, 5), st.floats(0.97, 1.0)), min_size=5, max_size=120),
    st.sampled_from((10, 30)),
)
def test_a_success_rate_hovering_at_the_slo_returns_a_region_no_sooner_than_the_dwell(
    samples: list[tuple[float, float]], dwell: int
) -> None:
    """Leaving is immediate; every return to a left region waits at least minDwell."""
    m = model(
        f"clusters: [a, b]\nstrategy: {{type: lowestLatency, slo: {{successRate: 0.985}},"
        f" hysteresis: {{minDwell: {dwell}s}}}}"
    )
    now, prev = 0.0, None
    left_at: float | None = None
    for step, rate in samples:
        now += step
        s = signals(now, {"ra": (rate, 10.0), "rb": (1.0, 50.0)})
        d = decide(m, "web", now=now, signals=s, previous=prev)
        had = prev is not None and "ra" in prev.weights
        if had and "ra" not in d.weights:
            left_at = now
        if not had and "ra" in d.weights and left_at is not None:
            assert now - left_at >= dwell
        prev = d


@given(st.dictionaries(st.sampled_from(REGIONS), st.floats(0, 1000), min_size=1))
def test_apportion_sums_to_100(shares: dict[str, float]) -> None:
    out = apportion(shares)
    assert sum(out.values()) in (0, 100)
    assert all(v >= 0 for v in out.values())


@given(
    st.dictionaries(st.sampled_from(REGIONS), st.floats(0.01, 1000), min_size=1),
    st.floats(0.2, 1.0),
)
def test_cap_shares_respects_the_cap_when_feasible(shares: dict[str, float], cap: float) -> None:
    out, feasible = cap_shares(shares, cap)
    assert abs(sum(out.values()) - 1.0) < 1e-6
    if feasible:
        assert max(out.values()) <= cap + 1e-9


weights100 = st.dictionaries(st.sampled_from(REGIONS), st.floats(0.1, 10), min_size=1).map(
    apportion
)


@given(weights100, weights100, st.floats(1, 100))
def test_step_towards_keeps_the_sum_and_the_cap(
    current: dict[str, int], target: dict[str, int], cap: float
) -> None:
    out = step_towards(current, target, cap)
    assert sum(out.values()) == 100
    assert all(abs(out.get(k, 0) - current.get(k, 0)) <= cap + 1 for k in set(out) | set(current))
    # it always makes progress
    if out != {k: target.get(k, 0) for k in out}:
        dist = sum(abs(target.get(k, 0) - current.get(k, 0)) for k in set(target) | set(current))
        after = sum(abs(target.get(k, 0) - out.get(k, 0)) for k in set(target) | set(out))
        assert after < dist


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from((3, 4, 7)),
    st.lists(tick(), min_size=1, max_size=15),
    st.dictionaries(st.sampled_from(REGIONS), st.floats(1, 300), max_size=4),
)
def test_group_answers_sum_to_100_and_never_name_a_region_the_decision_left(
    which: int,
    ticks: list[tuple[float, dict[str, bool], dict[str, tuple[float, float]], bool, int]],
    row: dict[str, float],
) -> None:
    m = MODELS[which]
    now, prev, groups = 1000.0, None, None
    for step, health, regions, stale, requests in ticks:
        now += step
        s = signals(now, regions, stale=stale, requests=requests)
        prev = decide(m, "web", now=now, signals=s, health=health, previous=prev)
        groups = decide_groups(m, prev, ["g", "none"], {"g": row}, now=now, previous=groups)
        out = {r for r, v in prev.verdicts.items() if v in ("unhealthy", "sloBreach")}
        for choice in groups.values():
            assert sum(w for _, w in choice.regions) == 100
            if len(out) < len(prev.verdicts) and choice.reason.rule != "allExcluded":
                assert not out & {r for r, _ in choice.regions}
