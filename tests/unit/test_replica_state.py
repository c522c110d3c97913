"""The leader's published state read back: a canary resumes exactly where it was (no step
repeated or skipped), a placement decision keeps what it placed and its timers."""

from __future__ import annotations

import json
from dataclasses import replace

from controlplane.canary.controller import CanaryStatus, advance
from controlplane.placement.engine import decide_all
from controlplane.replica.coordinator import encode_state
from controlplane.replica.state import (
    decode_canary,
    decode_decision,
    encode_canary,
    encode_decision,
    restore_canaries,
)
from tests.unit.placement_helpers import model, signals
from tests.unit.test_canary import HEALTHY, setup, sig


def through_json(status: CanaryStatus) -> CanaryStatus:
    _, spec = setup()
    back = decode_canary(json.loads(json.dumps(encode_canary(status))), spec)
    assert back is not None
    return back


def test_a_resumed_canary_takes_the_same_steps_as_the_original() -> None:
    _, spec = setup()
    status = advance("web-v2", spec, None, None, 0.0)
    status = advance("web-v2", spec, status, sig(60, HEALTHY), 60.0)  # step 2: 50 %
    assert (status.step, status.weight) == (1, 50)
    resumed = through_json(status)
    assert resumed == status
    # before the interval ends nothing moves; at its end both take the same single step
    for now, signal in ((90.0, sig(90, HEALTHY)), (120.0, sig(120, HEALTHY))):
        assert advance("web-v2", spec, resumed, signal, now) == advance(
            "web-v2", spec, status, signal, now
        )
    stepped = advance("web-v2", spec, resumed, sig(120, HEALTHY), 120.0)
    assert (stepped.step, stepped.weight) == (2, 100)  # the next step, once


def test_a_changed_canary_is_not_restored() -> None:
    m, spec = setup()
    status = advance("web-v2", spec, None, None, 0.0)
    data = encode_canary(status)
    assert decode_canary({**data, "canarySubset": "v3"}, spec) is None
    assert decode_canary({**data, "step": len(spec.steps) + 1}, spec) is None
    specs = {n: c.spec for n, c in m.canaries.items()}
    assert restore_canaries(specs, {"web-v2": data}) == {"web-v2": status}
    assert restore_canaries(specs, {"other": data}) == {}


def test_a_decision_keeps_what_it_placed_and_its_timers() -> None:
    m = model(
        "strategy: {type: lowestLatency, hysteresis: {minDwell: 30s}}",
    )
    s = signals(10.0, {"ra": (1.0, 50.0), "rb": (1.0, 200.0)})
    decision = decide_all(m, now=10.0, signals=s, health={}, services=frozenset({"web"}))["web"]
    back = decode_decision(json.loads(json.dumps(encode_decision(decision))))
    assert back.placed == decision.placed and back.weights == decision.weights
    assert (back.since, back.changed_at, back.dwell_until, back.target) == (
        decision.since,
        decision.changed_at,
        decision.dwell_until,
        decision.target,
    )
    assert back == replace(decision)  # every compared field survives the trip
    # the engine continues from it as from the original: the same weights a tick later
    later = signals(20.0, {"ra": (1.0, 50.0), "rb": (1.0, 200.0)})
    again = decide_all(
        m, now=20.0, signals=later, health={}, previous={"web": back}, services=frozenset({"web"})
    )["web"]
    assert again.weights == decision.weights


def test_the_published_text_is_stable() -> None:
    _, spec = setup()
    status = advance("web-v2", spec, None, None, 0.0)
    assert encode_state(({}, {"web-v2": status})) == encode_state(({}, {"web-v2": status}))
