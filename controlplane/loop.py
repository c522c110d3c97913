"""The feedback loop as it runs: signals, health and the model in; decisions and canary weights out.

I/O edge around pure logic. ``PlacementLoop`` keeps the newest model, signals (from the
Prometheus poller) and cluster health (from the GTM's probes), and on every change -- and when a
dwell, a paced step or a canary interval comes due -- asks the placement engine and the canary
controller (both pure, clock injected) for new decisions. It hands on:

- ``on_model``: the model with every canary's current weights written into its RoutePolicy
  (what the xDS compiler and the GTM serve; the store's model when no canary moved);
- ``on_decisions``: the placement decisions of every decided service
  (``placement.consumers.decided_services``: loop-driven ones and those a GlobalService steers
  to), the same Decision objects for the xDS compiler (EDS locality weights:
  ``consumers.xds_decisions``) and the GTM (the regions each client group is answered with),
  whenever a Decision is renewed (a new object: weights, a dwell, a verdict or staleness moved).

It runs in both modes of ``ubiq serve``: without a feedback source the signals stay ``None``, the
decisions follow the model and health alone (the GTM always has a Decision to answer from) and
no canary runs (``canaries=False``: nothing to analyse).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane import gcpolicy
from controlplane.canary.controller import CanaryStatus, advance_all, pause, resume
from controlplane.canary.controller import abort as abort_canary
from controlplane.canary.routes import apply_canaries
from controlplane.feedback.signals import Signals
from controlplane.placement.consumers import METRIC_STRATEGIES, decided_services, loop_driven
from controlplane.placement.decision import Decision
from controlplane.placement.engine import decide_all, next_wakeup
from controlplane.policy.model import Model

log = structlog.get_logger("ubiq.loop")

MAX_IDLE_S = 60.0  # re-decide at least this often (a fresh poll usually comes sooner)

__all__ = ["MAX_IDLE_S", "METRIC_STRATEGIES", "PlacementLoop", "loop_driven"]


class _LoopCollector(Collector):
    """``ubiq_placement_weight`` and the canary gauges, read at scrape time."""

    def __init__(self, loop: PlacementLoop) -> None:
        self._loop = loop

    def collect(self) -> Iterator[Metric]:
        weight = GaugeMetricFamily(
            "ubiq_placement_weight",
            "Percent of a decided service's traffic the placement decision gives a cluster",
            labels=["service", "region", "cluster"],
        )
        for service, decision in sorted(self._loop.decisions.items()):
            for placed in decision.placed:
                weight.add_metric([service, placed.region, placed.name], placed.weight)
        if weight.samples:  # nothing decided: no family at all
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
        if canary_weight.samples:  # no canary: no family at all
            yield canary_weight
        if step.samples:
            yield step


class PlacementLoop:
    def __init__(
        self,
        *,
        on_model: Callable[[Model], None],
        on_decisions: Callable[[Model, Mapping[str, Decision]], None],
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        canaries: bool = True,
    ) -> None:
        self._run_canaries = canaries  # False without a feedback source: nothing to analyse
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
        self._worker: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._dirty = False
        self._stopped = False
        self._commands = 0
        self.ticks = 0  # ticks decided on the worker thread (coalesced requests count once)
        if registry is not None:
            registry.register(_LoopCollector(self))

    @property
    def signals(self) -> Signals | None:
        return self._signals

    @property
    def model(self) -> Model:
        """The store's model the decisions were made from."""
        return self._model

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
        self._stopped = False  # a replica that led, followed (stopped) and leads again
        self._model = model
        self.decisions, self.canaries = dict(decisions), dict(canaries)
        self._served = self._served_from = Model.empty()
        self._served_weights = {}
        self._decide()

    def stop(self) -> None:
        self._stopped = True  # inputs that still arrive (health checks stopping) decide nothing
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._dirty = False
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

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
        self._commands += 1
        log.info("canary.command", canary=name, phase=self.canaries[name].phase)
        self._decide()
        return self.canaries[name]

    # --- deciding -----------------------------------------------------------------------------

    def _decide(self, *, notify: bool = True) -> None:
        """Decide again. Without a running event loop (the first model, unit tests) at once;
        inside one, on the worker thread (a tick with every value changed takes a second at 50
        regions x 1,000 services): requests that arrive meanwhile coalesce into one more run,
        with the newest inputs, and results are applied on the event loop."""
        if self._stopped:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is None or not notify:
            inputs = self._inputs()
            self._apply(inputs, _compute(inputs), notify=notify)
            return
        self._dirty = True
        if self._worker is None or self._worker.done():
            self._worker = running.create_task(self._run(), name="placement-decide")

    async def _run(self) -> None:
        running = asyncio.get_running_loop()
        while self._dirty:
            self._dirty = False
            inputs = self._inputs()
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, "ubiq-decide")
            result = await running.run_in_executor(self._executor, _compute, inputs)
            if self._stopped:
                return
            self.ticks += 1
            self._apply(inputs, result, notify=True)

    def _inputs(self) -> _Inputs:
        return _Inputs(
            now=self._clock(),
            model=self._model,
            signals=self._signals,
            health=dict(self._health),
            decisions=dict(self.decisions),
            canaries=dict(self.canaries),
            commands=self._commands,
            run_canaries=self._run_canaries,
        )

    def _apply(self, inputs: _Inputs, result: _Result | None, *, notify: bool) -> None:
        now = inputs.now
        if result is None:  # a bug in pure logic must not stop serving: keep the last decisions
            self._schedule(now + MAX_IDLE_S)
            return
        decisions, canaries = result
        if inputs.commands != self._commands:
            # a pause/resume/abort landed while deciding: it wins; the next run advances it
            canaries = dict(self.canaries)
            self._dirty = True
        model = inputs.model
        moved = {n: d for n, d in decisions.items() if self._placed(n) != d.placed}
        # any new Decision object (a dwell began, a verdict changed: the GTM's reasons read it)
        renewed = any(self.decisions.get(n) is not d for n, d in decisions.items())
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
        if notify and (renewed or left or model_changed):  # a new model may name other targets
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


@dataclass(frozen=True, slots=True)
class _Inputs:
    """One tick's inputs, copied on the event loop so the worker thread reads nothing that moves."""

    now: float
    model: Model
    signals: Signals | None
    health: Mapping[str, bool]
    decisions: Mapping[str, Decision]
    canaries: Mapping[str, CanaryStatus]
    commands: int  # canary commands applied so far (one landing mid-tick wins over the tick)
    run_canaries: bool = True  # False without a feedback source


_Result = tuple[dict[str, Decision], dict[str, CanaryStatus]]


def _compute(inputs: _Inputs) -> _Result | None:
    """The pure part of a tick (runs on the worker thread); None when it raised."""
    # A tick allocates hundreds of thousands of short-lived, acyclic objects; the full
    # collections they trigger walk the whole heap (models included) and stop every thread, the
    # event loop too. bench/feedback_loop.py's tick (50 regions x 1,000 services, every value
    # moved), back to back: GC running, the tick 2.0 s and the event loop stalled up to 0.13 s;
    # GC off, 0.44 s and 0.012 s. Paused through gcpolicy, so a compile or load overlapping the
    # tick in another thread keeps its own pause.
    with gcpolicy.paused(freeze=False):
        return _compute_now(inputs)


def _compute_now(inputs: _Inputs) -> _Result | None:
    model = inputs.model
    driven = decided_services(model)
    try:
        decisions = (
            decide_all(
                model,
                now=inputs.now,
                signals=inputs.signals,
                health=inputs.health,
                previous=inputs.decisions,
                services=driven,
            )
            if driven
            else {}
        )
        canaries = (
            advance_all(
                {n: c.spec for n, c in model.canaries.items()},
                inputs.canaries,
                inputs.signals,
                inputs.now,
            )
            if inputs.run_canaries
            else {}
        )
    except Exception:
        log.exception("loop.decide.failed", detail="keeping the previous decisions")
        return None
    return decisions, canaries
