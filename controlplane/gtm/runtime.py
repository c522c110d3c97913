"""The GTM planner: follows the policy model and health, and hands each decided plan on.

One async planner with one error boundary. Every model or health change (and every rotation
boundary, told by the caller) schedules one rebuild in a worker thread (GeoIP reads included),
so the event loop keeps answering; changes that arrive during a rebuild are coalesced into one
more rebuild with the newest inputs. A rebuild that fails (GtmError: a policy the GTM cannot
serve; anything else: a bug) is logged and the previous plan keeps serving. GeoIP databases
named by the policies are read here (``GeoDatabases``, cached); one that cannot be read is
logged and the plan is built with the policies' CIDR groups alone.

Placement Decisions (``update_placement``, from ``controlplane.loop``: the same Decision objects
the xDS compiler gets) decide, per GlobalService of a placed service, which regions each client
group is answered with (``gtm.placed``: ``placement.groups.decide_groups``, damped there).

When the answers may change with no input changing (a rotation boundary of roundRobin or
non-sticky weighted, the end of a client group's minimum dwell), ``next_wake`` says when and
``wake`` decides again; the caller's timer calls them.

The I/O around it (DNS listeners, health checker, that timer) is ``serve.GtmService``'s:
it passes ``on_plan`` (swap the DNS table) and ``on_targets`` (what to probe).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.errors import GtmError
from controlplane.gtm.explain import explain_dict, explain_text, served_name
from controlplane.gtm.failovers import failed_over, failover_keys, regions_by_address
from controlplane.gtm.geo_load import GeoDatabases, describe
from controlplane.gtm.health.state import CheckedTarget
from controlplane.gtm.placed import Choices, as_placed, place_groups
from controlplane.gtm.plan import (
    DecidedPlan,
    GtmConfig,
    GtmPlan,
    decide,
    next_dwell_expiry,
    next_rotation,
    plan_from_model,
)
from controlplane.gtm.types import ClientGroup, Decision, HealthView, SteeringPolicy
from controlplane.placement.decision import Decision as PlacementDecision
from controlplane.placement.groups import GroupChoice, next_group_wake
from controlplane.policy.model import Model

log = structlog.get_logger("ubiq.gtm")


def glue_addresses(listen: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """Listen addresses usable as glue: a wildcard (0.0.0.0, ::) is not an address to publish."""
    usable = [h for h, _ in listen if h not in ("0.0.0.0", "::", "")]
    return tuple(dict.fromkeys(usable)) or ("127.0.0.1",)


class _AnswerCollector(Collector):
    """The answers being served right now, read from the live plan at scrape time."""

    def __init__(self, runtime: GtmRuntime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        answers = GaugeMetricFamily(
            "ubiq_gtm_answer",
            "1 for each address answered for a name to a client group",
            labels=["name", "group", "region", "address"],
        )
        all_down = GaugeMetricFamily(
            "ubiq_gtm_all_down",
            "1 when no target of the name is healthy for the group (the all-down answer is served)",
            labels=["name", "group"],
        )
        rebuilds = CounterMetricFamily(
            "ubiq_gtm_rebuilds", "Answer table recomputations (model, health or rotation)"
        )
        failovers = CounterMetricFamily(
            "ubiq_gtm_failovers",
            "Times a name's answers left a region because none of its targets there was healthy",
            labels=["name", "region"],
        )
        plan = self._runtime.plan
        if plan is not None:
            for (name, group), d in sorted(plan.decisions.items()):
                policy = plan.policies.get(name)
                regions: dict[str, str] = {}
                for t in policy.targets if policy is not None else ():
                    if t.address not in regions or t.region in d.regions[:1]:
                        regions[t.address] = t.region
                for address in d.addresses:  # fallback addresses are no target: region ""
                    answers.add_metric([name, group, regions.get(address, ""), address], 1)
                all_down.add_metric([name, group], 1 if (d.all_down or d.servfail) else 0)
        rebuilds.add_metric([], self._runtime.epoch)
        for (name, region), n in sorted(self._runtime.failovers.items()):
            failovers.add_metric([name, region], n)
        yield answers
        yield all_down
        yield rebuilds
        yield failovers


class GtmRuntime:
    def __init__(
        self,
        config: GtmConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        on_plan: Callable[[DecidedPlan], None] = lambda plan: None,
        on_targets: Callable[[tuple[CheckedTarget, ...]], None] = lambda targets: None,
    ) -> None:
        self._clock = clock
        self.config = config or GtmConfig()
        self.registry = registry if registry is not None else CollectorRegistry()
        self._on_plan = on_plan
        self._on_targets = on_targets
        self.geo = GeoDatabases()  # used by the worker thread only
        self.failovers: dict[tuple[str, str], int] = {}  # (name, region) -> n
        self._regions: dict[str, str] = {}  # target address -> region, for DNS answer metrics
        self.registry.register(_AnswerCollector(self))
        self._plan: DecidedPlan | None = None
        self._base: GtmPlan | None = None
        self._epoch = 0
        self._serial = 0
        self._model: Model | None = None  # the newest model not yet planned
        self._health = HealthView(frozenset())
        self._planned: Model | None = None  # the model ``_base`` was planned from
        self._decisions: Mapping[str, PlacementDecision] = MappingProxyType({})
        self._measured: Mapping[tuple[str, str], float] = MappingProxyType({})
        self._choices: Choices = MappingProxyType({})  # name -> group -> the served choice
        self._dirty = False
        self._worker: asyncio.Task[None] | None = None
        self._dwell_handled = float("-inf")  # the latest dwell expiry a rebuild was started for

    @property
    def plan(self) -> DecidedPlan | None:
        """The plan being served (decided with ``plan.health``)."""
        return self._plan

    @property
    def base(self) -> GtmPlan | None:
        """The newest model's plan before health (what rotation timers and probes follow)."""
        return self._base

    @property
    def epoch(self) -> int:
        return self._epoch

    async def start(self, model: Model) -> DecidedPlan:
        """Plan the first model; raises GtmError when no table can be built from it."""
        self.update_model(model)
        await self.settled()
        if self._plan is None:
            raise GtmError("no answer table could be built from the policy")
        return self._plan

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.wait({self._worker})

    def update_model(self, model: Model) -> None:
        """Plan ``model`` (in the worker; the newest model wins)."""
        self._model = model
        self.rebuild()

    def update_health(self, view: HealthView) -> None:
        """Decide again with ``view`` (in the worker; the newest health wins)."""
        self._health = view
        self.rebuild()

    def update_placement(
        self,
        decisions: Mapping[str, PlacementDecision],
        client_latency: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        """Decide again with these placement Decisions (service -> Decision) and, when given,
        measured client latency ((group, region) -> ms); each GlobalService of a service with a
        Decision answers each client group with the regions ``decide_groups`` gives it."""
        latency = (
            self._measured if client_latency is None else MappingProxyType(dict(client_latency))
        )
        same = dict(decisions).keys() == dict(self._decisions).keys() and all(
            d is self._decisions[n] for n, d in decisions.items()
        )
        if same and latency == self._measured:
            return
        self._decisions = MappingProxyType(dict(decisions))
        self._measured = latency
        self.rebuild()

    @property
    def choices(self) -> Choices:
        """GTM name -> client group -> the placement's GroupChoice the served plan used."""
        return self._choices

    def rebuild(self) -> None:
        """Schedule a rebuild with the newest inputs; must be called on the event loop."""
        if self._base is None and self._model is None:
            return
        self._dirty = True
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._rebuild_pending())

    async def settled(self) -> None:
        """Return once no rebuild is pending or running."""
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)

    async def _rebuild_pending(self) -> None:
        while self._dirty:
            self._dirty = False
            model, self._model = self._model, None
            served = self._plan
            try:  # the one error boundary: the previous plan keeps serving
                base, plan, choices = await asyncio.to_thread(
                    self._work,
                    model,
                    self._base,
                    self._health,
                    served,
                    self._decisions,
                    self._measured,
                )
                if base is not self._base:
                    self._base = base
                    self._planned = model if model is not None else self._planned
                    self._on_targets(base.checked)
                self._choices = MappingProxyType(choices)
                self._apply(plan)
            except GtmError as exc:
                log.error("gtm.plan.rejected", error=str(exc), detail="keeping previous answers")
            except Exception:
                log.exception("gtm.rebuild.failed", detail="keeping previous answers")
            else:
                continue
            if model is not None and self._base is not None:
                self._dirty = True  # the model was bad: still decide with the newest health

    def _work(
        self,
        model: Model | None,
        base: GtmPlan | None,
        health: HealthView,
        served: DecidedPlan | None,
        decisions: Mapping[str, PlacementDecision],
        measured: Mapping[tuple[str, str], float],
    ) -> tuple[GtmPlan, DecidedPlan, dict[str, dict[str, GroupChoice]]]:
        """In the worker thread: plan ``model`` (if any), place each group, then decide
        (steering and building again only what changed since ``served``)."""
        if model is not None:
            base = self._plan_model(model)
        planned = model if model is not None else self._planned
        if base is None or planned is None:
            raise GtmError("no plan to decide")
        now = self._clock()
        choices = (
            place_groups(
                base, planned, decisions, now=now, measured=measured, previous=self._choices
            )
            if decisions
            else {}
        )
        plan = decide(
            base,
            health,
            epoch=self._epoch + 1,
            previous=served.decisions if served is not None else None,
            config=self.config,
            serial=self._next_serial(),
            now=now,
            placed=as_placed(choices),
            reuse=served,
        )
        return base, plan, choices

    def _plan_model(self, model: Model) -> GtmPlan:
        """A model's health-independent plan; reads the GeoIP databases it names."""
        geo = self.geo.load(model)
        for error in geo.errors:
            log.error("gtm.geoip.unused", error=error, detail="steering with CIDR client groups")
        if geo.groups:
            log.info("gtm.geoip.loaded", networks=describe(geo.groups))
        return plan_from_model(model, self.config, geo.groups)

    def next_wake(self) -> float | None:
        """When (the injected clock's time) the answers may next change with no model or health
        change: a rotation boundary or the end of a minimum dwell; None when neither is due."""
        now = self._clock()
        times: list[float] = []
        base = self._base
        rotation = next_rotation(base, now) if base is not None else None
        if rotation is not None:
            times.append(now + rotation)
        dwell = self._held_until()
        if dwell is not None and dwell > self._dwell_handled:
            times.append(dwell)
        return min(times) if times else None

    def wake(self) -> None:
        """Decide again because a rotation boundary or a dwell expiry was reached."""
        dwell = self._held_until()
        if dwell is not None and dwell <= self._clock():
            self._dwell_handled = max(self._dwell_handled, dwell)
        self.rebuild()

    def _held_until(self) -> float | None:
        """The earliest end of a client group's minimum dwell (placement's) holding an answer."""
        plan = self._plan
        ends = [
            t
            for t in (
                next_dwell_expiry(plan) if plan is not None else None,
                next_group_wake(c for per in self._choices.values() for c in per.values()),
            )
            if t is not None
        ]
        return min(ends) if ends else None

    def _next_serial(self) -> int:
        """SOA serial: the time in seconds, and always more than the last one."""
        self._serial = max(int(self._clock()), self._serial + 1)
        return self._serial

    def region_of(self, address: str) -> str:
        """The region of the target answered with ``address`` ("" for none: a fallback)."""
        return self._regions.get(address, "")

    def _apply(self, plan: DecidedPlan) -> None:
        old = self._plan
        previous = old.decisions if old is not None else None
        for key in failed_over(previous or {}, plan):
            self.failovers[key] = self.failovers.get(key, 0) + 1
        if old is None or plan.policies is not old.policies:
            for key in failover_keys(plan):
                self.failovers.setdefault(key, 0)
            self._regions = regions_by_address(plan.policies)
        self._epoch += 1
        moved = _moved_answers(previous, plan.decisions)
        self._plan = plan
        self._on_plan(plan)
        if moved:
            log.info(
                "gtm.answers.changed",
                epoch=self._epoch,
                changed=len(moved),
                answers={f"{n}@{g}": list(a) for (n, g), a in moved[:LOGGED_ANSWERS]},
            )

    def explain(self, name: str, client: str) -> dict[str, Any] | None:
        """Why ``name`` answers ``client`` as it does (the REST API's JSON); None if unknown."""
        found = self._decided(name, client)
        if found is None:
            return None
        policy, group, health, decision, alias = found
        # elapsed times against the clock now, not when the plan was decided
        return explain_dict(
            policy, group, health, decision, client=client, alias=alias, now=self._clock()
        )

    def explain_text(self, name: str, client: str) -> str | None:
        """The same as ``explain``, as the text ``ubiq dns explain`` prints."""
        data = self.explain(name, client)
        return None if data is None else explain_text(data)

    def _decided(
        self, name: str, client: str
    ) -> tuple[SteeringPolicy, ClientGroup, HealthView, Decision, str | None] | None:
        plan = self._plan
        if plan is None:
            return None
        served = served_name(plan.policies, plan.zones, name)
        if served is None:
            return None
        policy = plan.policies[served[0]]
        group = plan.group_for(client)
        decision = plan.decisions.get((policy.name, group.name))
        if decision is None:
            return None
        # the health the plan was decided with, not the newest (a rebuild may be in flight)
        return policy, group, plan.health, decision, served[1]


#: How many changed answers one ``gtm.answers.changed`` line lists (the count says how many moved)
LOGGED_ANSWERS = 20


def _moved_answers(
    previous: Mapping[tuple[str, str], Decision] | None,
    current: Mapping[tuple[str, str], Decision],
) -> list[tuple[tuple[str, str], tuple[str, ...]]]:
    """(name, group) → addresses for each answer that differs from ``previous`` (a gone answer
    as no addresses), sorted."""
    before = previous or {}
    moved = [
        (key, tuple(d.addresses))
        for key, d in current.items()
        if (old := before.get(key)) is None or old.addresses != d.addresses
    ]
    moved += [(key, ()) for key in before.keys() - current.keys()]
    return sorted(moved)
