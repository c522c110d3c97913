"""The canary controller: steps, analysis outcomes, commands, and the RoutePolicy rewrite."""

from __future__ import annotations

import pytest

from controlplane.canary.controller import (
    CanaryStatus,
    CommandError,
    abort,
    advance,
    advance_all,
    pause,
    resume,
)
from controlplane.canary.routes import apply_canaries
from controlplane.feedback.signals import RegionSignal, SignalKey, Signals
from controlplane.policy.canary import CanarySpec
from controlplane.policy.model import Model
from tests.support.policy import doc, load

ROUTE = doc(
    "RoutePolicy",
    "web",
    """
    hosts: [web.mesh.example]
    http:
    - name: by-header
      match: [{headers: {x-canary: {exact: "1"}}}]
      route: [{service: web, subset: v2}]
    - name: split
      route: [{service: web, subset: v1, weight: 100}, {service: web, subset: v2, weight: 0}]
    """,
)


ANALYSIS = (
    "analysis: {minSuccessRate: 0.99, maxLatencyP99: 300ms, minRequests: 50, failureLimit: 2}"
)


def canary(extra: str, analysis: str) -> str:
    return doc(
        "Canary",
        "web-v2",
        "service: web\nroutePolicy: web\nstableSubset: v1\ncanarySubset: v2\n"
        f"steps: [10, 50, 100]\ninterval: 60s\n{analysis}\n{extra}",
    )


def setup(extra: str = "", analysis: str = ANALYSIS) -> tuple[Model, CanarySpec]:
    m = load(ROUTE, canary(extra, analysis))
    return m, m.canaries["web-v2"].spec


def sig(
    at: float,
    canary: tuple[float, float, float] | None,
    stable: tuple[float, float, float] = (1000, 1.0, 100),
    stale: bool = False,
) -> Signals:
    """(requests, success rate, p99) for the canary (v2) and stable (v1) subsets, split over two regions."""
    values = {}
    for subset, data in (("v2", canary), ("v1", stable)):
        if data is None:
            continue
        req, ok, p99 = data
        for region in ("eu-west", "us-west"):
            values[SignalKey("web", region, subset)] = RegionSignal(
                requests=req / 2, success_rate=ok, latency_p99_ms=p99
            )
    return Signals(at=at, values=values, stale=stale)


def run(spec: CanarySpec, samples: list[Signals | None], start: float = 0.0) -> list[CanaryStatus]:
    status = advance("web-v2", spec, None, None, start)
    out = [status]
    for i, s in enumerate(samples, start=1):
        status = advance("web-v2", spec, status, s, start + 60.0 * i)
        out.append(status)
    return out


HEALTHY = (200, 0.999, 120)


def test_a_healthy_canary_is_promoted_through_every_step() -> None:
    m, spec = setup()
    history = run(spec, [sig(60 * i, HEALTHY) for i in range(1, 4)])
    assert [s.weight for s in history] == [10, 50, 100, 100]
    assert history[-1].phase == "promoted"
    kinds = [e.kind for e in history[-1].events]
    assert kinds == [
        "started",
        "analysis.pass",
        "step",
        "analysis.pass",
        "step",
        "analysis.pass",
        "promoted",
    ]
    assert history[-1].next_analysis_at is None
    routed = apply_canaries(m, {"web-v2": history[-1]})
    assert [d.weight for d in routed.route_policies["web"].spec.http[1].route] == [0, 100]


def test_analysis_waits_for_the_interval() -> None:
    _, spec = setup()
    s0 = advance("web-v2", spec, None, None, 0)
    s1 = advance("web-v2", spec, s0, sig(30, HEALTHY), 30)
    assert (s1.weight, s1.outcome, s1.next_analysis_at) == (10, None, 60.0)


def test_a_failing_canary_is_rolled_back_and_stable_gets_everything() -> None:
    m, spec = setup()
    bad = (200, 0.80, 120)
    history = run(spec, [sig(60, HEALTHY), sig(120, bad), sig(180, bad)])
    assert history[2].phase == "progressing" and history[2].failures == 1  # failureLimit 2
    final = history[-1]
    assert final.phase == "rolledBack" and final.weight == 0 and final.stable_weight == 100
    assert any(c.metric == "successRate" and c.ok is False for c in final.checks)
    routed = apply_canaries(m, {"web-v2": final})
    split = routed.route_policies["web"].spec.http[1]
    assert [(d.subset, d.weight) for d in split.route] == [("v1", 100), ("v2", 0)]


def test_latency_over_the_limit_fails() -> None:
    _, spec = setup("onFailure: pause")
    slow = (200, 1.0, 900)
    final = run(spec, [sig(60, slow), sig(120, slow)])[-1]
    assert final.phase == "paused" and final.weight == 10
    assert "latencyP99 900 (want <= 300): FAIL" in final.why


def test_a_canary_without_traffic_is_inconclusive_not_failed() -> None:
    _, spec = setup()
    history = run(spec, [sig(60, None), sig(120, (10, 0.0, 5000)), sig(180, None)])
    final = history[-1]
    assert final.phase == "progressing" and final.weight == 10
    assert final.outcome == "inconclusive" and final.failures == 0 and final.inconclusive == 3
    assert "fewer than minRequests 50" in final.why
    # traffic arrives: it moves on
    moved = advance("web-v2", spec, final, sig(240, HEALTHY), 240)
    assert moved.weight == 50


def test_stale_signals_hold_the_step() -> None:
    _, spec = setup()
    final = run(spec, [sig(60, HEALTHY, stale=True)])[-1]
    assert final.weight == 10 and final.outcome == "inconclusive" and "stale" in final.why


def test_relative_thresholds_compare_with_the_stable_subset() -> None:
    _, spec = setup(
        analysis="analysis: {minSuccessRate: 0.9, minRequests: 50, relative: {maxSuccessRateDrop: 0.005,"
        " maxLatencyIncreasePercent: 20}}"
    )
    worse = advance(
        "web-v2", spec, run(spec, [])[0], sig(60, (200, 0.99, 100), (1000, 1.0, 100)), 60
    )
    assert worse.phase == "rolledBack"  # failureLimit 1 (default); drop 0.01 > 0.005
    slower = advance(
        "web-v2", spec, run(spec, [])[0], sig(60, (200, 1.0, 150), (1000, 1.0, 100)), 60
    )
    assert slower.phase == "rolledBack"
    assert any(c.metric == "latencyIncreasePercent" and c.value == 50.0 for c in slower.checks)
    fine = advance("web-v2", spec, run(spec, [])[0], sig(60, (200, 1.0, 110), (1000, 1.0, 100)), 60)
    assert fine.weight == 50
    no_stable = advance("web-v2", spec, run(spec, [])[0], sig(60, (200, 1.0, 110), (0, 1, 1)), 60)
    assert no_stable.outcome == "inconclusive"


def test_pause_resume_abort() -> None:
    m, spec = setup()
    s0 = run(spec, [])[0]
    paused = pause(s0, 10)
    assert paused.phase == "paused"
    held = advance("web-v2", spec, paused, sig(120, HEALTHY), 120)
    assert held.weight == 10 and held.phase == "paused"
    with pytest.raises(CommandError, match="only a paused canary resumes"):
        resume(s0, spec, 10)
    resumed = resume(held, spec, 130)
    assert resumed.phase == "progressing" and resumed.next_analysis_at == 190.0
    stepped = advance("web-v2", spec, resumed, sig(190, HEALTHY), 190)
    assert stepped.weight == 50
    aborted = abort(stepped, 200)
    assert aborted.phase == "aborted" and aborted.weight == 0
    with pytest.raises(CommandError):
        abort(aborted, 201)
    assert [e.kind for e in aborted.events][-1] == "aborted"
    routed = apply_canaries(m, {"web-v2": aborted})
    assert [d.weight for d in routed.route_policies["web"].spec.http[1].route] == [100, 0]


def test_route_rewrite_touches_only_the_split_rule() -> None:
    m, spec = setup()
    s = run(spec, [sig(60, HEALTHY)])[-1]
    routed = apply_canaries(m, {"web-v2": s})
    rules = routed.route_policies["web"].spec.http
    assert [(d.subset, d.weight) for d in rules[1].route] == [("v1", 50), ("v2", 50)]
    assert rules[0] == m.route_policies["web"].spec.http[0]
    changed = {k for k, h in routed.document_hashes.items() if m.document_hashes.get(k) != h}
    assert changed == {("RoutePolicy", "web")}
    assert apply_canaries(m, {}) is m


def test_a_changed_spec_restarts_the_canary_and_removed_ones_are_dropped() -> None:
    _, spec = setup()
    s = run(spec, [sig(60, HEALTHY)])[-1]
    other = spec.model_copy(update={"steps": (5, 100)})
    restarted = advance("web-v2", other, s, sig(70, HEALTHY), 70)
    assert restarted.weight == 5 and restarted.step == 0
    assert advance_all({}, {"web-v2": s}, None, 80) == {}
