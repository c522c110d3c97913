"""Properties of the per-client-group damping (``placement.groups``), with a simulated clock.

Moved here from the GTM's steering: this is now the one place answers are damped."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.gtm.placed import as_placed, place_groups
from controlplane.gtm.plan import GtmConfig, plan_from_model
from controlplane.gtm.plan import decide as decide_plan
from controlplane.gtm.types import HealthView
from controlplane.placement.engine import decide
from controlplane.placement.groups import GroupChoice, decide_groups
from controlplane.policy.model import Model
from tests.support.policy import doc
from tests.unit.placement_helpers import model

TWO = (
    "clusters: [a, b]\nstrategy: {{type: static, hysteresis: {{minDwell: {dwell}s,"
    " thresholdPercent: {band}}}, damping: {{stickinessBonusPercent: 0}}}}"
)
_MODELS: dict[tuple[int, int], Model] = {}


def two(dwell: int, band: int) -> Model:
    if (dwell, band) not in _MODELS:
        _MODELS[(dwell, band)] = model(TWO.format(dwell=dwell, band=band))
    return _MODELS[(dwell, band)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(50, 60), st.floats(50, 60)), min_size=2, max_size=30))
def test_a_group_does_not_flap_within_the_threshold(series: list[tuple[float, float]]) -> None:
    """Two regions within 20% of each other: after the first answer, it never changes."""
    m = two(0, 20)
    d = decide(m, "web", now=0)
    previous: GroupChoice | None = None
    answers = []
    for step, (a, b) in enumerate(series):
        prev = {"g": previous} if previous is not None else None
        rows = {"g": {"ra": a, "rb": b}}
        previous = decide_groups(m, d, ["g"], rows, now=step, previous=prev, by_latency=True)["g"]
        answers.append(previous.regions)
    assert len(set(answers)) == 1


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(1, 500), st.floats(1, 500), st.floats(0, 20), st.booleans()),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 60),
)
def test_minimum_dwell_bounds_the_number_of_switches(
    series: list[tuple[float, float, float, bool]], dwell: int
) -> None:
    """Between two switches of a group's answer at least ``minDwell`` passes, however many
    re-decisions happen (some at the same ``now``), unless the answered region was left because
    it went down (health overrides the dwell)."""
    m = two(dwell, 0)
    decision = None
    previous: GroupChoice | None = None
    switches = 0
    now = start = 1000.0
    for a, b, step, ra_down in series:
        now += step
        decision = decide(m, "web", now=now, health={"a": not ra_down}, previous=decision)
        prev = {"g": previous} if previous is not None else None
        rows = {"g": {"ra": a, "rb": b}}
        g = decide_groups(m, decision, ["g"], rows, now=now, previous=prev, by_latency=True)["g"]
        assert {r for r, _ in g.regions} <= set(decision.weights)  # only serving regions
        if previous is not None and g.regions != previous.regions:
            assert g.since == now
            if g.reason.rule != "leave":
                assert now - previous.since >= dwell
                switches += 1
        previous = g
    assert switches <= (now - start) // dwell


def global_service(strategy: str, latency: list[int]) -> str:
    """A GlobalService for ``web`` over clusters a, b, c with two client groups."""
    g1 = ", ".join(f"{r}: {ms}" for r, ms in zip(("ra", "rb", "rc"), latency[:3], strict=True))
    g2 = ", ".join(f"{r}: {ms}" for r, ms in zip(("ra", "rb", "rc"), latency[3:], strict=True))
    targets = ", ".join(f"{{cluster: {c}, address: 127.0.9.{i}}}" for i, c in enumerate("abc", 1))
    return doc(
        "GlobalService",
        "web",
        f"name: web.gtm.example\nzone: gtm.example\nservice: web\nstrategy: {strategy}\n"
        f"targets: [{targets}]\n"
        "clientGroups: [{name: g1, cidrs: [10.1.0.0/16]}, {name: g2, cidrs: [10.2.0.0/16]}]\n"
        f"latency: {{g1: {{{g1}}}, g2: {{{g2}}}}}",
    )


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["lowestLatency", "failover", "weighted", "roundRobin", "geo"]),
    st.sampled_from(["static", "lowestLatency", "capacity"]),
    st.integers(1, 3),
    st.lists(st.integers(1, 300), min_size=6, max_size=6),
    st.fixed_dictionaries({c: st.booleans() for c in "abc"}),
    st.fixed_dictionaries({c: st.booleans() for c in "abc"}),
)
def test_dns_answers_only_regions_the_decision_serves(
    gtm_strategy: str,
    placement: str,
    k: int,
    latency: list[int],
    cluster_health: dict[str, bool],
    probe_health: dict[str, bool],
) -> None:
    """Whatever the strategies, health and latencies: the GTM answers each client group only
    with regions the service's Decision gives weight (the regions Envoy sends traffic to),
    unless none of them has a target the GTM's own probes see healthy (then health alone)."""
    spread = f"clusters: [a, b, c]\nspread: {{minRegions: {k}}}\nstrategy: {{type: {placement}}}\n"
    m = model(spread, global_service(gtm_strategy, latency))
    decision = decide(m, "web", now=0, health=cluster_health)
    plan = plan_from_model(m, GtmConfig())
    choices = place_groups(plan, m, {"web": decision}, now=0)
    targets = plan.policies["web.gtm.example"].targets
    known = frozenset((t.cluster, t.address, t.port) for t in targets)
    healthy = frozenset(key for key in known if probe_health[key[0]])
    decided = decide_plan(
        plan, HealthView(healthy, known), epoch=1, placed=as_placed(choices)
    ).decisions
    serving = {r for r, w in decision.weights.items() if w > 0}
    probed_up = {f"r{c}" for c, up in probe_health.items() if up}
    for (name, group), answer in decided.items():
        choice = choices[name][group]
        allowed = {r for r, _ in choice.regions} | set(choice.fallback)
        assert allowed <= serving or not serving
        if serving and allowed & probed_up:
            assert set(answer.regions) <= allowed, (group, answer, choice)
