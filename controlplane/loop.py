"""The feedback loop as it runs: signals, health and the model in; decisions and canary weights out.

I/O edge around pure logic. ``PlacementLoop`` keeps the newest model, signals (from the
Prometheus poller) and cluster health (from the GTM's probes), and on every change -- and when a
dwell, a paced step or a canary interval comes due -- asks the placement engine and the canary
controller (both pure, clock injected) for new decisions. It hands on:

- ``on_model``: the model with every canary's current weights written into its RoutePolicy
  (what the xDS compiler and the GTM serve; the store's model when no canary moved);
- ``on_decisions``: the placement decisions of the *loop-driven* services, for the xDS compiler
  (EDS locality weights) and the GTM (regions a decision left are not answered).

A service is loop-driven when its Placement asks for measurements: a ``lowestLatency``,
``lowestCost`` or ``capacity`` strategy, or an ``slo``. Every other service keeps the compiler's
static locality rules, so running with a feedback source changes nothing for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.canary.controller import CanaryStatus, advance_all, pause, resume
from controlplane.canary.controller import abort as abort_canary
from controlplane.canary.routes import apply_canaries
from controlplane.feedback.signals import Signals
from controlplane.placement.decision import Decision
from controlplane.placement.engine import decide_all, next_wakeup
from controlplane.policy.model import Model

log = structlog.get_logger("ubiq.loop")

METRIC_STRATEGIES = frozenset({"lowestLatency", "lowestCost", "capacity"})
MAX_IDLE_S = 60.0  # re-decide at least this often (a fresh poll usually comes sooner)


def loop_driven(model: Model) -> frozenset[str]:
    """The services whose placement the loop decides (see the module docstring)."""
    out = set()
    for placement in model.placements.values():
        strategy = placement.spec.strategy
        if strategy.type in METRIC_STRATEGIES or strategy.slo is not None:
            out.add(placement.spec.service)
    return frozenset(out)


def excluded_clusters(model: Model, decisions: Mapping[str, Decision]) -> dict[str, frozenset[str]]:
    """GTM name -> clusters in regions its service's decision sends no traffic to (none when the
    decision has no region with traffic: DNS then falls back to health alone)."""
    out: dict[str, frozenset[str]] = {}
    for gs in model.global_services.values():
        decision = decisions.get(gs.spec.service)
        if decision is None or not decision.weights:
            continue
        left = frozenset(p.name for p in decision.placed if p.region not in decision.weights)
        if left:
            out[gs.spec.name.rstrip(".").lower()] = left
    return out


class _LoopCollector(Collector):
    """``ubiq_placement_weight`` and the canary gauges, read at scrape time."""

    def __init__(self, loop: PlacementLoop) -> None:
        self._loop = loop

    def collect(self) -> Iterator[Metric]:
        weight = GaugeMetricFamily(
            "ubiq_placement_weight",
            "Percent of a loop-driven service's traffic the placement decision gives a cluster",
            labels=["service", "region", "cluster"],
        )
        for service, decision in sorted(self._loop.decisions.items()):
            for placed in decision.placed:
                weight.add_metric([service, placed.region, placed.name], placed.weight)
        yield weight
        canary_weight = GaugeMetricFamily(
            "ubiq_canary_weight",
            "Percent of the canary rule's traffic on each subset",
            labels=["canary", "subset"],
        )
        step = GaugeMetricFamily(
            "ubiq_canary_step", "Index of the canary's current step", labels=["canary"]
        )
        for name, status in sorted(self._loop.canaries.items()):
            canary_weight.add_metric([name, status.canary_subset], status.weight)
            canary_weight.add_metric([name, status.stable_subset], status.stable_weight)
            step.add_metric([name], status.step)
        yield canary_weight
        yield step


class PlacementLoop:
    def __init__(
        self,
        *,
        on_model: Callable[[Model], None],
        on_decisions: Callable[[Model, Mapping[str, Decision]], None],
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._on_model = on_model
        self._on_decisions = on_decisions
        self._clock = clock
        self._model = Model.empty()
        self._served = self._model  # the model with canary weights, last handed on
        self._served_from = self._model  # the store's model ``_served`` was made from
        self._served_weights: dict[str, int] = {}  # the canary weights ``_served`` carries
        self._signals: Signals | None = None
        self._health: dict[str, bool] = {}
        self.decisions: dict[str, Decision] = {}
        self.canaries: dict[str, CanaryStatus] = {}
        self._timer: asyncio.TimerHandle | None = None
        if registry is not None:
            registry.register(_LoopCollector(self))

    @property
    def signals(self) -> Signals | None:
        return self._signals

    def effective_model(self, model: Model) -> Model:
        """The first model, decided at once (before the servers start, so nothing is handed on:
        the caller starts them with this model and then hands ``decisions`` on)."""
        self._model = model
        self._decide(notify=False)
        return self._served

    def update_model(self, model: Model) -> None:
        self._model = model
        self._decide()

    def update_signals(self, signals: Signals) -> None:
        self._signals = signals
        self._decide()

    def update_health(self, health: Mapping[str, bool]) -> None:
        if dict(health) != self._health:
            self._health = dict(health)
            self._decide()

    def restore(
        self,
        model: Model,
        decisions: Mapping[str, Decision],
        canaries: Mapping[str, CanaryStatus],
    ) -> None:
        """Resume from state another replica published (this one just became the leader):
        decide from there and hand the result on, even when it equals what is served."""
        self._model = model
        self.decisions, self.canaries = dict(decisions), dict(canaries)
        self._served = self._served_from = Model.empty()
        self._served_weights = {}
        self._decide()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- canary commands (API / CLI) -----------------------------------------------------------

    def pause(self, name: str) -> CanaryStatus:
        return self._command(name, lambda s, now: pause(s, now))

    def resume(self, name: str) -> CanaryStatus:
        spec = self._model.canaries[name].spec if name in self._model.canaries else None
        if spec is None:
            raise KeyError(name)
        return self._command(name, lambda s, now: resume(s, spec, now))

    def abort(self, name: str) -> CanaryStatus:
        return self._command(name, lambda s, now: abort_canary(s, now))

    def _command(
        self, name: str, change: Callable[[CanaryStatus, float], CanaryStatus]
    ) -> CanaryStatus:
        status = self.canaries.get(name)
        if status is None:
            raise KeyError(name)
        self.canaries[name] = change(status, self._clock())  # CommandError: wrong phase
        log.info("canary.command", canary=name, phase=self.canaries[name].phase)
        self._decide()
        return self.canaries[name]

    # --- deciding -----------------------------------------------------------------------------

    def _decide(self, *, notify: bool = True) -> None:
        now = self._clock()
        model = self._model
        driven = loop_driven(model)
        try:
            decisions = (
                decide_all(
                    model,
                    now=now,
                    signals=self._signals,
                    health=self._health,
                    previous=self.decisions,
                    services=driven,
                )
                if driven
                else {}
            )
            canaries = advance_all(
                {n: c.spec for n, c in model.canaries.items()}, self.canaries, self._signals, now
            )
        except Exception:  # a bug in pure logic must not stop serving: keep the last decisions
            log.exception("loop.decide.failed", detail="keeping the previous decisions")
            self._schedule(now + MAX_IDLE_S)
            return
        moved = {n: d for n, d in decisions.items() if self._placed(n) != d.placed}
        left = set(self.decisions) - set(decisions)
        weights = {n: c.weight for n, c in canaries.items()}
        weights_moved = weights != self._served_weights
        self.decisions, self.canaries = decisions, canaries
        for name, decision in moved.items():
            log.info(
                "placement.decision.changed",
                service=name,
                weights=dict(decision.weights),
                rule=decision.reason.rule,
                why=decision.reason.summary,
            )
        model_changed = model is not self._served_from
        if weights_moved or model_changed:
            served = apply_canaries(model, canaries)
            self._served_from, self._served_weights = model, weights
            if served is not self._served:
                self._served = served
                if notify:
                    self._on_model(served)
        if notify and (moved or left or model_changed):  # a new model may name other targets
            self._on_decisions(self._served, decisions)
        self._schedule(self._next_time(now))

    def _placed(self, service: str) -> tuple[Any, ...] | None:
        d = self.decisions.get(service)
        return None if d is None else d.placed

    def _next_time(self, now: float) -> float:
        times = [now + MAX_IDLE_S]
        wake = next_wakeup(self.decisions)
        if wake is not None:
            times.append(wake)
        times += [s.next_analysis_at for s in self.canaries.values() if s.next_analysis_at]
        return max(min(times), now + 0.05)

    def _schedule(self, when: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # deciding before the event loop runs (first model)
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(max(0.0, when - self._clock()), self._decide)
