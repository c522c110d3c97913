"""The running GTM: follows the policy model and health, keeps the DNS server's table current.

I/O edge. Every model change or health change recomputes the plan (pure) and swaps the table
in one assignment; inside the event loop that work (GeoIP reads included) runs in a worker
thread so DNS keeps answering. A plan that cannot be built (GtmError, or any other error) is
logged and the old table keeps answering. When a policy rotates (roundRobin, non-sticky
weighted), a timer rebuilds the table at each of its rotation boundaries (every ``ttl``
seconds). GeoIP databases named by the policies are read here (``GeoDatabases``, cached); one
that cannot be read is logged and the plan is built with the policies' CIDR groups alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.errors import GtmError
from controlplane.gtm.explain import explain, explain_dict
from controlplane.gtm.failovers import failed_over, failover_keys, regions_by_address
from controlplane.gtm.geo_load import GeoDatabases, describe
from controlplane.gtm.health import HealthChecker
from controlplane.gtm.metrics import DnsMetrics
from controlplane.gtm.plan import GtmConfig, GtmPlan, decide, next_rotation, plan_from_model
from controlplane.gtm.server import DnsServer
from controlplane.gtm.types import HealthView
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
        listen: Sequence[tuple[str, int]],
        *,
        config: GtmConfig | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self.config = config or GtmConfig(ns_addresses=glue_addresses(listen))
        self.registry = registry if registry is not None else CollectorRegistry()
        self._plan: GtmPlan | None = None
        self._epoch = 0
        self._health = HealthView(frozenset())
        self.checker = HealthChecker((), self._on_health, registry=self.registry)
        self.metrics = DnsMetrics(self.registry)
        self.metrics.watch_regions(self._region_of)
        self.failovers: dict[tuple[str, str], int] = {}  # (name, region) -> n
        self._regions: dict[str, str] = {}  # target address -> region, for DNS answer metrics
        self.server: DnsServer | None = None
        self._listen = list(listen)
        self.geo = GeoDatabases()  # used by one thread at a time: start() or the worker
        self.registry.register(_AnswerCollector(self))
        self._base: GtmPlan | None = None
        self._model: Model | None = None  # the newest model not yet planned
        self._serial = 0
        self._dirty = False
        self._worker: asyncio.Task[None] | None = None
        self._rotator: asyncio.Task[None] | None = None

    @property
    def plan(self) -> GtmPlan | None:
        return self._plan

    @property
    def epoch(self) -> int:
        return self._epoch

    async def start(self, model: Model) -> None:
        base = self._plan_model(model)  # the first table, built at once
        if base is not None:
            self._accept(base)
            self._apply(self._decide(base, self._health))
        if self._plan is None or self._plan.table is None:
            raise GtmError("no answer table could be built from the policy")
        self.server = DnsServer(self._plan.table, self._listen, metrics=self.metrics)
        await self.server.start()
        await self.checker.start()
        self._rotator = asyncio.get_running_loop().create_task(self._rotate())
        log.info("gtm serving", listen=[f"{t}:{h}:{p}" for t, h, p in self.server.addresses])

    async def stop(self) -> None:
        await self.checker.stop()
        for task in (self._rotator, self._worker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.server is not None:
            await self.server.stop()

    def update_model(self, model: Model) -> None:
        """Plan a new model: at once outside an event loop, else in the worker thread."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            base = self._plan_model(model)
            if base is not None:
                self._accept(base)
                self._rebuild()
            return
        self._model = model
        self._rebuild()

    def _plan_model(self, model: Model) -> GtmPlan | None:
        """A model's health-independent plan (reads GeoIP databases); None when rejected."""
        geo = self.geo.load(model)
        for error in geo.errors:
            log.error("geoip database not used; steering with CIDR client groups", error=error)
        if geo.groups:
            log.info("geoip client groups", networks=describe(geo.groups))
        try:
            return plan_from_model(model, self.config, geo.groups)
        except GtmError as exc:
            log.error("gtm plan rejected; keeping previous answers", error=str(exc))
        except Exception:
            log.exception("gtm plan failed; keeping previous answers")
        return None

    def _accept(self, base: GtmPlan) -> None:
        self._base = base
        self.checker.set_targets(base.checked)

    def _on_health(self, view: HealthView) -> None:
        self._health = view
        self._rebuild()

    def _rebuild(self) -> None:
        """Recompute the answers. Inside the event loop the work runs in a thread (a large table
        takes a noticeable fraction of a second and DNS must keep answering meanwhile); requests
        that arrive during a rebuild are coalesced into one more rebuild with the newest inputs."""
        if self._base is None and self._model is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if self._base is not None:
                self._apply(self._decide(self._base, self._health))
            return
        self._dirty = True
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._rebuild_in_thread())

    async def _rebuild_in_thread(self) -> None:
        while self._dirty:
            self._dirty = False
            model, self._model = self._model, None
            try:
                base, plan = await asyncio.to_thread(self._work, model, self._base, self._health)
                if base is not None and base is not self._base:
                    self._accept(base)
                self._apply(plan)
            except Exception:  # the worker must not die silently; the old table keeps answering
                log.exception("gtm rebuild failed; keeping previous answers")

    def _work(
        self, model: Model | None, base: GtmPlan | None, health: HealthView
    ) -> tuple[GtmPlan | None, GtmPlan | None]:
        """In the worker thread: plan ``model`` (if any), then decide; (base, decided plan)."""
        if model is not None:
            new = self._plan_model(model)
            if new is None and base is None:
                return None, None
            if new is not None:
                base = new
        if base is None:
            return None, None
        return base, self._decide(base, health)

    async def _rotate(self) -> None:
        """Rebuild at every rotation boundary of a rotating policy (roundRobin, non-sticky
        weighted); sleeps a second at a time while no policy rotates."""
        while True:
            base = self._base
            wait = next_rotation(base, self._clock()) if base is not None else None
            # a hair past the boundary, so the rebuild sees the new slot
            await asyncio.sleep(1.0 if wait is None else wait + 0.001)
            if wait is not None:
                self._rebuild()

    def _decide(self, base: GtmPlan, health: HealthView) -> GtmPlan | None:
        previous = self._plan.decisions if self._plan is not None else None
        try:
            return decide(
                base,
                health,
                epoch=self._epoch + 1,
                previous=previous,
                config=self.config,
                serial=self._next_serial(),
                now=self._clock(),
            )
        except GtmError as exc:
            log.error("gtm table rejected; keeping previous answers", error=str(exc))
            return None
        except Exception:
            log.exception("gtm table failed; keeping previous answers")
            return None

    def _next_serial(self) -> int:
        """SOA serial: the time in seconds, and always more than the last one."""
        self._serial = max(int(self._clock()), self._serial + 1)
        return self._serial

    def _region_of(self, address: str) -> str:
        return self._regions.get(address, "")

    def _apply(self, plan: GtmPlan | None) -> None:
        if plan is None:
            return
        old = self._plan
        previous = old.decisions if old is not None else None
        for key in failed_over(previous or {}, plan):
            self.failovers[key] = self.failovers.get(key, 0) + 1
        if old is None or plan.policies is not old.policies:
            for key in failover_keys(plan):
                self.failovers.setdefault(key, 0)
            self._regions = regions_by_address(plan.policies)
        self._epoch += 1
        changed = previous is None or {k: d.addresses for k, d in plan.decisions.items()} != {
            k: d.addresses for k, d in previous.items()
        }
        self._plan = plan
        if self.server is not None and plan.table is not None:
            self.server.swap_table(plan.table)
        if changed:
            log.info(
                "gtm answers changed",
                epoch=self._epoch,
                answers={
                    f"{n}@{g}": list(d.addresses) for (n, g), d in sorted(plan.decisions.items())
                },
            )

    def health(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.checker.snapshot()]

    def explain(self, name: str, client: str, *, text: bool = False) -> dict[str, Any] | str | None:
        plan = self._plan
        if plan is None:
            return None
        policy = plan.policies.get(name.rstrip(".").lower())
        if policy is None:
            return None
        group = plan.group_for(client)
        decision = plan.decisions.get((policy.name, group.name))
        if decision is None:
            return None
        # the health the plan was decided with, not the newest (a rebuild may be in flight)
        if text:
            return explain(policy, group, plan.health, decision, client=client)
        return explain_dict(policy, group, plan.health, decision, client=client)
