"""Invariants of the canary state machine over generated analysis outcomes and commands."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.canary.controller import CommandError, abort, advance, pause, resume
from controlplane.feedback.signals import RegionSignal, SignalKey, Signals
from controlplane.policy.canary import Analysis, CanarySpec

SAMPLES = {
    "pass": (500.0, 1.0),
    "fail": (500.0, 0.5),
    "quiet": (3.0, 0.0),  # too few requests: inconclusive
}


def signals(at: float, kind: str) -> Signals:
    requests, ok = SAMPLES[kind]
    key = SignalKey("web", "eu-west", "v2")
    return Signals(at=at, values={key: RegionSignal(requests=requests, success_rate=ok)})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 100), min_size=1, max_size=5, unique=True).map(sorted),
    st.integers(1, 3),
    st.sampled_from(("rollback", "pause")),
    st.lists(
        st.sampled_from(("pass", "fail", "quiet", "stale", "pause", "resume", "abort")),
        max_size=40,
    ),
)
def test_weights_phases_and_counts_stay_coherent(
    steps: list[int], limit: int, on_failure: str, script: list[str]
) -> None:
    spec = CanarySpec(
        service="web",
        route_policy="web",
        stable_subset="v1",
        canary_subset="v2",
        steps=tuple(steps),
        interval=10_000,
        analysis=Analysis(min_success_rate=0.99, min_requests=50, failure_limit=limit),
        on_failure=on_failure,  # type: ignore[arg-type]
    )
    now = 0.0
    status = advance("c", spec, None, None, now)
    for action in script:
        now += 10.0
        before = status
        try:
            if action == "pause":
                status = pause(status, now)
            elif action == "resume":
                status = resume(status, spec, now)
            elif action == "abort":
                status = abort(status, now)
            else:
                stale = Signals(at=now, stale=True)
                sample = stale if action == "stale" else signals(now, action)
                status = advance("c", spec, status, sample, now)
        except CommandError:
            assert status is before
            continue
        assert status.weight + status.stable_weight == 100
        assert status.weight in (0, 100, *steps)
        if status.phase in ("rolledBack", "aborted"):
            assert status.weight == 0
        if status.phase == "promoted":
            assert status.weight == 100
        if before.phase in ("promoted", "rolledBack", "aborted"):
            assert status.phase == before.phase and status.weight == before.weight
        if (
            status.outcome == "inconclusive"
            and status is not before
            and before.phase == "progressing"
        ):
            assert status.weight == before.weight and status.failures == before.failures
        if status.phase == "progressing":
            assert status.failures < limit
        if status.weight > before.weight and before.phase == "progressing":
            assert status.outcome == "pass"
    assert len(status.events) <= 200
