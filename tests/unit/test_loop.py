"""The running feedback loop (``controlplane.loop``): which services it drives, what it hands to
xDS and the GTM, canary weights written into the served model, commands, and its metrics."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry

from controlplane import loop as loop_module
from controlplane.canary.controller import CanaryStatus, CommandError
from controlplane.canary.controller import advance_all as real_advance_all
from controlplane.gtm.placed import as_placed, place_groups
from controlplane.gtm.plan import GtmConfig, decide, plan_from_model
from controlplane.gtm.types import HealthView
from controlplane.loop import PlacementLoop, loop_driven
from controlplane.placement.consumers import decided_services, gtm_placed, xds_decisions
from controlplane.placement.decision import Decision, compiler_decisions
from controlplane.placement.engine import decide_all as real_decide_all
from controlplane.policy.model import Model
from tests.support.policy import doc, load
from tests.support.poll import until
from tests.unit.placement_helpers import BASE, model, signals
from tests.unit.test_canary import ANALYSIS, HEALTHY, ROUTE, canary, sig

SLO = "strategy: {type: static, slo: {successRate: 0.95}}\n"


class Sink:
    def __init__(self) -> None:
        self.models: list[Model] = []
        self.decisions: list[Mapping[str, Decision]] = []

    def loop(self, clock: list[float], registry: CollectorRegistry | None = None) -> PlacementLoop:
        return PlacementLoop(
            on_model=self.models.append,
            on_decisions=lambda _m, d: self.decisions.append(dict(d)),
            registry=registry,
            clock=lambda: clock[0],
        )


def test_only_placements_that_ask_for_measurements_are_driven() -> None:
    assert loop_driven(model()) == frozenset()
    assert loop_driven(model("strategy: {type: static}\n")) == frozenset()
    assert loop_driven(model(SLO)) == {"web"}
    assert loop_driven(model("strategy: {type: lowestLatency}\n")) == {"web"}


def test_a_region_under_its_slo_is_left_and_the_gtm_told() -> None:
    sink, clock = Sink(), [1000.0]
    loop = sink.loop(clock)
    m = model("clusters: [a, b]\n" + SLO)
    assert loop.effective_model(m) is m  # no canary: the store's model is served as it is
    assert sink.models == [] and sink.decisions == []  # the caller starts the servers with it
    before = loop.decisions["web"]
    assert set(before.weights) == {"ra", "rb"}

    loop.update_signals(signals(1001.0, {"ra": (0.999, 50.0), "rb": (0.70, 50.0)}))
    after = loop.decisions["web"]
    assert set(after.weights) == {"ra"}  # leaving a region that breaks the SLO is immediate
    assert sink.decisions[-1]["web"] is after
    assert [p.weight for p in after.placed if p.region == "rb"] in ([], [0])

    gs = doc(
        "GlobalService",
        "web",
        "name: web.gtm.example\nzone: gtm.example\nservice: web\n"
        "targets: [{cluster: a, address: 127.0.9.1}, {cluster: b, address: 127.0.9.2}]",
    )
    with_gtm = load(
        doc("Placement", "web", "service: web\nclusters: [a, b]\n" + SLO), gs, base=BASE
    )
    # the GTM answers from the same decision: rb, which it left, is answered to no group
    plan = plan_from_model(with_gtm, GtmConfig())
    choices = place_groups(plan, with_gtm, loop.decisions, now=1001.0)
    assert {g: c.regions for g, c in choices["web.gtm.example"].items()} == {
        "default": (("ra", 100),)
    }
    assert choices["web.gtm.example"]["default"].source is after
    decided = decide(plan, HealthView(frozenset()), epoch=1, placed=as_placed(choices))
    assert {d.addresses for d in decided.decisions.values()} == {("127.0.9.1",)}


GS = doc(
    "GlobalService",
    "web",
    "name: web.gtm.example\nzone: gtm.example\nservice: web\n"
    "targets: [{cluster: a, address: 127.0.9.1}, {cluster: b, address: 127.0.9.2}]",
)


def test_a_placement_the_gtm_steers_to_is_decided_in_both_modes() -> None:
    static = model("clusters: [a, b]\nstrategy: {type: static}\n", GS)
    assert gtm_placed(static) == decided_services(static) == {"web"}
    assert loop_driven(static) == frozenset()
    assert decided_services(load(GS, base=BASE)) == frozenset()  # no Placement: health alone
    sink, clock = Sink(), [1000.0]
    loop = sink.loop(clock)
    loop.effective_model(static)
    assert set(loop.decisions) == {"web"}
    # Envoy takes a Decision only for loop-driven services, and only while measured
    assert xds_decisions(static, loop.decisions, measured=True) == {}
    slo = model("clusters: [a, b]\n" + SLO, GS)
    assert set(xds_decisions(slo, {"web": loop.decisions["web"]}, measured=True)) == {"web"}
    assert xds_decisions(slo, {"web": loop.decisions["web"]}, measured=False) == {}


def test_stale_signals_hold_the_decision() -> None:
    sink, clock = Sink(), [1000.0]
    loop = sink.loop(clock)
    loop.effective_model(model("clusters: [a, b]\n" + SLO))
    before = loop.decisions["web"]
    loop.update_signals(signals(1001.0, {"rb": (0.1, 50.0)}, stale=True))
    after = loop.decisions["web"]
    assert after.weights == before.weights and after.reason.rule == "hold.stale"
    # the held decision is handed on (the GTM's reasons say "stale"); what Envoy reads is the
    # same, so serve recompiles nothing for xDS
    assert sink.decisions[-1]["web"] is after
    assert compiler_decisions({"web": after}) == compiler_decisions({"web": before})


def test_without_a_feedback_source_no_canary_runs() -> None:
    """``canaries=False`` (``ubiq serve`` without --prometheus): the RoutePolicy is served as
    written and commands find no canary, while placement is still decided."""
    sink, clock = Sink(), [0.0]
    loop = PlacementLoop(
        on_model=sink.models.append,
        on_decisions=lambda _m, d: sink.decisions.append(dict(d)),
        clock=lambda: clock[0],
        canaries=False,
    )
    m = load(ROUTE, canary("", ANALYSIS))
    served = loop.effective_model(m)
    assert served is m and loop.canaries == {}
    with pytest.raises(KeyError):
        loop.pause("web-v2")


def test_a_stopped_loop_decides_again_when_restored() -> None:
    """A replica that led, followed (its loop stopped) and leads again resumes deciding."""
    sink, clock = Sink(), [1000.0]
    loop = sink.loop(clock)
    m = model("clusters: [a, b]\n" + SLO)
    loop.effective_model(m)
    published = dict(loop.decisions)
    loop.stop()
    handed = len(sink.decisions)
    loop.restore(m, published, {})
    assert len(sink.decisions) == handed + 1  # decided and handed on again
    clock[0] = 1001.0
    loop.update_signals(signals(1001.0, {"ra": (0.999, 50.0), "rb": (0.5, 50.0)}))
    assert set(loop.decisions["web"].weights) == {"ra"}


def test_canary_weights_reach_the_served_model_and_commands_work() -> None:
    sink, clock = Sink(), [0.0]
    registry = CollectorRegistry()
    loop = sink.loop(clock, registry)
    m = load(ROUTE, canary("", ANALYSIS))
    served = loop.effective_model(m)
    split = served.route_policies["web"].spec.http[1].route
    assert [d.weight for d in split] == [90, 10]  # the first step, not the store's 100/0
    assert (
        registry.get_sample_value("ubiq_canary_weight", {"canary": "web-v2", "subset": "v2"}) == 10
    )
    assert registry.get_sample_value("ubiq_canary_step", {"canary": "web-v2"}) == 0

    clock[0] = 60.0
    loop.update_signals(sig(60.0, HEALTHY))
    assert loop.canaries["web-v2"].weight == 50
    assert [d.weight for d in sink.models[-1].route_policies["web"].spec.http[1].route] == [50, 50]

    assert loop.pause("web-v2").phase == "paused"
    with pytest.raises(CommandError):
        loop.pause("web-v2")
    assert loop.resume("web-v2").phase == "progressing"
    assert loop.abort("web-v2").phase == "aborted"
    assert [d.weight for d in sink.models[-1].route_policies["web"].spec.http[1].route] == [100, 0]
    with pytest.raises(KeyError):
        loop.pause("nope")


def test_placement_weights_are_exported() -> None:
    sink, clock = Sink(), [1000.0]
    registry = CollectorRegistry()
    loop = sink.loop(clock, registry)
    loop.effective_model(model("clusters: [a, b]\n" + SLO))
    weights = {
        region: registry.get_sample_value(
            "ubiq_placement_weight", {"service": "web", "region": region, "cluster": cluster}
        )
        for region, cluster in (("ra", "a"), ("rb", "b"))
    }
    assert weights["ra"] is not None and weights["rb"] is not None
    assert weights["ra"] + weights["rb"] == 100


async def test_ticks_run_off_the_event_loop_and_requests_coalesce(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inside a running event loop a tick runs on the worker thread; inputs that arrive while
    it runs make one more tick (with the newest inputs), not one each; results land on the loop."""
    sink, clock = Sink(), [1000.0]
    loop = sink.loop(clock)
    loop.effective_model(model("clusters: [a, b]\n" + SLO))  # inline: no event loop work yet
    release, started = threading.Event(), threading.Event()
    threads: list[str] = []
    real = real_decide_all

    def blocked(*args: object, **kwargs: object) -> dict[str, Decision]:
        threads.append(threading.current_thread().name)
        started.set()
        release.wait(10)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop_module, "decide_all", blocked)
    try:
        loop.update_signals(signals(1001.0, {"ra": (0.999, 50.0), "rb": (0.99, 50.0)}))
        await asyncio.to_thread(started.wait, 10)  # the tick is running; this loop is not blocked
        for i in range(5):
            loop.update_signals(signals(1002.0 + i, {"ra": (0.999, 50.0), "rb": (0.70, 50.0)}))
        assert set(loop.decisions["web"].weights) == {"ra", "rb"}  # nothing applied yet
        release.set()
        await until(lambda: loop.ticks >= 2, what="the first tick and one coalesced tick")
        assert set(loop.decisions["web"].weights) == {"ra"}  # the newest signals were decided
        assert sink.decisions[-1]["web"] is loop.decisions["web"]
        assert len(threads) == loop.ticks == 2, threads
        assert all(name.startswith("ubiq-decide") for name in threads), threads
    finally:
        release.set()
        loop.stop()


async def test_a_command_during_a_tick_wins_over_the_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    sink, clock = Sink(), [0.0]
    loop = sink.loop(clock)
    loop.effective_model(load(ROUTE, canary("", ANALYSIS)))
    release, started = threading.Event(), threading.Event()
    real = real_advance_all

    def blocked(*args: object, **kwargs: object) -> dict[str, CanaryStatus]:
        started.set()
        release.wait(10)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop_module, "advance_all", blocked)
    try:
        clock[0] = 60.0
        loop.update_signals(sig(60.0, HEALTHY))  # would step the canary to 50 %
        await asyncio.to_thread(started.wait, 10)
        assert loop.pause("web-v2").phase == "paused"
        release.set()
        await until(lambda: loop.ticks >= 2, what="the tick and the one after the command")
        assert loop.canaries["web-v2"].phase == "paused"
        assert loop.canaries["web-v2"].weight == 10  # the step the tick computed was dropped
    finally:
        release.set()
        loop.stop()
