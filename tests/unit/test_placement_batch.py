"""The batch tick (``decide_all``) gives the Decisions of the per-service reference path.

Both are run over generated models, polls, health and clocks, each tick from the same previous
decisions (sometimes the batch's, sometimes the reference's, so each continues from the other's
memory): the Decisions, their explanation, every region's inputs, the smoothed memory and "kept
the previous Decision object" must agree.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from controlplane.feedback.signals import RegionSignal, SignalKey, Signals
from controlplane.placement.batch import SmoothedView
from controlplane.placement.decision import Decision, explain
from controlplane.placement.engine import decide_all
from controlplane.placement.single import decide_all_each
from controlplane.policy.documents import AnyDocument, Cluster, Placement, Service
from controlplane.policy.model import Model

REGIONS = [f"r{i}" for i in range(8)]
# c8 shares r1 with c1: a region with one of two clusters down is still healthy
CLUSTERS = {f"c{i}": f"r{i}" for i in range(8)} | {"c8": "r1"}

FAST = {"minDwell": "2s", "thresholdPercent": 10}
DAMP = {"stepInterval": "1s", "maxWeightChangePercent": 30, "minRequests": 20}
STRATEGIES: list[dict[str, Any]] = [
    {"type": "lowestLatency", "slo": {"successRate": 0.99}, "hysteresis": FAST, "damping": DAMP},
    {
        "type": "lowestLatency",
        "latencyPercentile": "p50",
        "hysteresis": {"minDwell": "3s", "thresholdPercent": 0},
        "damping": {"ewmaAlpha": 1, "minRequests": 0, "stickinessBonusPercent": 0},
    },
    {
        "type": "lowestLatency",
        "latencyPercentile": "p90",
        "hysteresis": FAST,
        "damping": {**DAMP, "ewmaAlpha": 0.3, "stickinessBonusPercent": 20},
    },
    {"type": "lowestCost", "slo": {"latencyP99": "100ms", "successRate": 0.95}, "hysteresis": FAST},
    {"type": "capacity", "damping": DAMP},
    {"type": "failover", "order": ["c3", "c1", "c0"], "hysteresis": FAST},
    {"type": "static", "slo": {"successRate": 0.9}},
    {
        "type": "lowestLatency",
        "hysteresis": {"minDwell": "1s", "thresholdPercent": 0},
        "damping": {"stickinessBonusPercent": 15, "minRequests": 5, "stepInterval": "1s"},
    },
]
SPREADS: list[dict[str, Any] | None] = [
    None,
    {"minRegions": 2},
    {"minRegions": 3, "maxSharePercent": 40},
    {"minRegions": 8},
]


def build(placements: list[tuple[int, int, bool] | None]) -> Model:
    docs: list[AnyDocument] = []
    for i, (name, region) in enumerate(CLUSTERS.items()):
        spec: dict[str, Any] = {
            "region": region,
            "labels": {"mesh": "on"},
            "costWeight": 1 + i % 3,
        }
        if i % 2:
            spec["capacity"] = {"requestsPerSecond": 100 * (1 + i % 4)}
        if name == "c7":
            spec["taints"] = [{"key": "maintenance", "effect": "NoSchedule"}]
        docs.append(Cluster.model_validate({"metadata": {"name": name}, "spec": spec}))
    for s, placement in enumerate(placements):
        name = f"s{s}"
        eps = [{"cluster": c, "address": f"10.0.{s}.{i + 1}"} for i, c in enumerate(CLUSTERS)]
        docs.append(
            Service.model_validate(
                {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}], "endpoints": eps}}
            )
        )
        if placement is None:
            continue
        strategy, spread, few = placement
        body: dict[str, Any] = {"service": name, "strategy": STRATEGIES[strategy]}
        if few:
            body["clusters"] = ["c0", "c1", "c8", "c3"]
        else:
            body["clusterSelector"] = {"matchLabels": {"mesh": "on"}}
        if SPREADS[spread] is not None and not (few and spread == 3):
            body["spread"] = SPREADS[spread]
        docs.append(Placement.model_validate({"metadata": {"name": name}, "spec": body}))
    return Model.build(docs)


MODELS = [
    build([(0, 0, False), (0, 1, False), (1, 0, True), (2, 2, False), (3, 0, False), None]),
    build([(4, 2, False), (5, 0, False), (6, 0, True), (0, 3, False), (2, 1, True), (3, 1, True)]),
    build([(0, 0, False), (0, 0, False), (0, 0, True), (1, 1, False), (2, 0, False)]),
    build([(7, 0, False), (7, 1, False), (7, 0, True), (0, 0, False)]),
]

maybe = st.one_of(st.none(), st.sampled_from((0.0, 12.5, 40.0, 99.9, 100.0, 250.0)))
region_signal = st.builds(
    RegionSignal,
    success_rate=st.one_of(st.none(), st.sampled_from((1.0, 0.999, 0.98, 0.96, 0.9, 0.5))),
    latency_p50_ms=maybe,
    latency_p90_ms=maybe,
    latency_p99_ms=st.one_of(
        st.none(), st.sampled_from((40.0, 42.0, 44.0, 46.0, 50.0)), st.floats(1, 400)
    ),
    requests=st.sampled_from((None, 0.0, 5.0, 20.0, 500.0)),
    active_connections=st.sampled_from((None, 1.0, 2.0)),
)


@st.composite
def poll(draw: st.DrawFn, services: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(("new", "new", "new", "repeat", "stale", "none")))
    values: dict[SignalKey, RegionSignal] = {}
    for s in draw(st.lists(st.sampled_from(services), unique=True, min_size=1)):
        for r in draw(st.lists(st.sampled_from(REGIONS), unique=True)):
            values[SignalKey(s, r)] = draw(region_signal)
    if draw(st.booleans()):
        values[SignalKey(services[0], "r0", "v1")] = draw(region_signal)
    health = {c: draw(st.booleans()) for c in draw(st.lists(st.sampled_from(list(CLUSTERS))))}
    return {
        "kind": kind,
        "values": values,
        "health": health,
        "step": draw(st.sampled_from((0.0, 0.5, 1.0, 1.5, 2.5, 7.0, 40.0))),
        "carry_batch": draw(st.booleans()),
    }


def agree(batch: Decision, ref: Decision, prev: Decision | None) -> None:
    assert batch == ref
    assert explain(batch) == explain(ref)
    assert batch.regions == ref.regions
    assert batch.as_dict() == ref.as_dict()
    assert dict(batch.smoothed) == dict(ref.smoothed)
    assert tuple(batch.seen) == tuple(ref.seen)
    assert batch.placed == ref.placed
    assert (batch is prev) == (ref is prev)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_batch_tick_gives_the_reference_decisions(data: st.DataObject) -> None:
    which = data.draw(st.sampled_from(range(len(MODELS))))
    model = MODELS[which]
    services = list(model.services)
    polls = data.draw(st.lists(poll(services), min_size=1, max_size=14))
    now = 1000.0
    previous: dict[str, Decision] = {}
    last: Signals | None = None
    for p in polls:
        now += p["step"]
        signals: Signals | None
        if p["kind"] == "none":
            signals = None
        elif p["kind"] == "repeat" and last is not None:
            signals = Signals(at=now, values=dict(last.values))
        else:
            signals = Signals(at=now, values=p["values"], stale=p["kind"] == "stale")
        batch = decide_all(model, now=now, signals=signals, health=p["health"], previous=previous)
        ref = decide_all_each(
            model, now=now, signals=signals, health=p["health"], previous=previous
        )
        assert list(batch) == list(ref)
        for name in services:
            agree(batch[name], ref[name], previous.get(name))
            if isinstance(batch[name].smoothed, SmoothedView):
                event("decided on the batch path")
            if batch[name] is previous.get(name):
                event("kept the previous Decision")
        previous = batch if p["carry_batch"] else ref
        if signals is not None and not signals.stale:
            last = signals


def steady_signals(at: float, jitter: float, services: list[str]) -> Signals:
    return Signals(
        at=at,
        values={
            SignalKey(s, r): RegionSignal(
                requests=500.0,
                success_rate=0.999,
                latency_p50_ms=10.0 + (i * 7 + j * 13) % 90 + jitter,
                latency_p90_ms=20.0 + (i * 5 + j * 11) % 90 + jitter,
                latency_p99_ms=40.0 + (i * 7 + j * 13) % 300 + jitter,
            )
            for i, s in enumerate(services)
            for j, r in enumerate(REGIONS)
        },
    )


def test_a_moving_poll_is_decided_on_the_batch_path_and_an_equal_one_keeps_every_decision() -> None:
    model = MODELS[2]
    services = list(model.services)
    first = decide_all(model, now=0.0, signals=steady_signals(0.0, 0.0, services))
    moved = decide_all(model, now=1.0, signals=steady_signals(1.0, 0.5, services), previous=first)
    ref = decide_all_each(
        model, now=1.0, signals=steady_signals(1.0, 0.5, services), previous=first
    )
    for name in services:
        agree(moved[name], ref[name], first[name])
        assert isinstance(moved[name].smoothed, SmoothedView)
        assert moved[name] is not first[name]
    again = decide_all(model, now=1.2, signals=steady_signals(1.2, 0.5, services), previous=moved)
    assert all(again[name] is moved[name] for name in services)


def scripted(at: float, service: str, p99: dict[str, float]) -> Signals:
    return Signals(
        at=at,
        values={
            SignalKey(service, r): RegionSignal(requests=500.0, success_rate=1.0, latency_p99_ms=v)
            for r, v in p99.items()
        },
    )


def test_the_bonus_band_and_dwell_agree_on_a_scripted_run() -> None:
    """A current region within the stickiness bonus stays; one beyond it is left after the dwell,
    in paced steps; a breach leaves at once (reference path) and the batch picks up after it."""
    model = MODELS[3]
    polls = [
        {"r0": 46.0},
        {"r0": 46.0, "r1": 42.0, "r2": 100.0},  # inside the 15 % bonus: stays on r0
        {"r0": 46.0, "r1": 30.0, "r2": 100.0},  # r1 smoothed 36, beyond it: r1, paced
        {"r0": 46.0, "r1": 30.0, "r2": 100.0},
        {"r0": 46.0, "r1": 30.5, "r2": 100.0},
        {"r0": 46.0, "r1": 31.0, "r2": 100.0},
        {"r0": 46.0, "r1": 31.0, "r2": 100.0},
    ]
    previous: dict[str, Decision] = {}
    rules = []
    for i, p99 in enumerate(polls):
        now = 1000.0 + 1.5 * i
        signals = scripted(now, "s0", p99)
        batch = decide_all(model, now=now, signals=signals, previous=previous)
        ref = decide_all_each(model, now=now, signals=signals, previous=previous)
        for name in model.services:
            agree(batch[name], ref[name], previous.get(name))
        rules.append(batch["s0"].reason.rule)
        previous = batch
    assert rules[1] == "lowestLatency"  # r0 kept: 46 x 0.85 < 42
    assert batch["s0"].target == {"r1": 100} and "step" in rules
