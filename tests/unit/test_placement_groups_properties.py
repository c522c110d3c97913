"""Properties of the per-client-group damping (``placement.groups``), with a simulated clock.

Moved here from the GTM's steering: this is now the one place answers are damped."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.placement.engine import decide
from controlplane.placement.groups import GroupChoice, decide_groups
from controlplane.policy.model import Model
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
