"""Active health checks: one asyncio task per target, bounded concurrency, thresholds, metrics.

The I/O edge of GTM health. Probing is ``health_probes`` (or any injected ``Probe``); counting
is ``health_state.observe`` (pure). When a target's healthy/unhealthy state changes, ``on_change``
is called at once, from the event loop, with the new ``HealthView`` -- that recomputes the DNS
answer table. A failing ``on_change`` is logged and never stops the checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.gtm.health import probes as health_probes
from controlplane.gtm.health.state import (
    CheckedTarget,
    ProbeResult,
    TargetHealth,
    TargetKey,
    health_view,
    observe,
)
from controlplane.gtm.types import HealthView

__all__ = ["HealthChecker", "OnChange", "Probe", "TargetStatus"]

OnChange = Callable[[HealthView], None]
Probe = Callable[[CheckedTarget], Awaitable[ProbeResult]]
Sleep = Callable[[float], Awaitable[None]]

log = structlog.get_logger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """One row of ``HealthChecker.rows()``; ``as_dict()`` is the REST API's JSON."""

    cluster: str
    region: str
    address: str
    port: int
    kind: str
    healthy: bool | None  # None: undecided, answered as healthy
    successes: int
    failures: int
    last_error: str | None
    last_change: float | None  # clock() time, seconds
    last_probe: float | None
    probes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class HealthChecker:
    """Probes every target on its own schedule and keeps the current ``HealthView``."""

    def __init__(
        self,
        targets: Iterable[CheckedTarget],
        on_change: OnChange,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        max_concurrency: int = 32,
        probe: Probe | None = None,
    ) -> None:
        self._on_change = on_change
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._sem = asyncio.Semaphore(max_concurrency)
        self._probe = probe or self._default_probe
        self._tls: dict[tuple[bool, str | None], ssl.SSLContext] = {}
        self._targets: dict[TargetKey, CheckedTarget] = {}
        self._states: dict[TargetKey, TargetHealth] = {}
        self._tasks: dict[TargetKey, asyncio.Task[None]] = {}
        self._running = False
        self._view = HealthView(frozenset())
        self.registry = registry if registry is not None else CollectorRegistry()
        self._probes_total = Counter(
            "ubiq_gtm_health_probes",
            "Health probes by target and result",
            ["cluster", "region", "endpoint", "kind", "result"],
            registry=self.registry,
        )
        self._transitions = Counter(
            "ubiq_gtm_health_transitions",
            "Targets changing state: to=healthy or to=unhealthy (the first decision included)",
            ["cluster", "region", "endpoint", "to"],
            registry=self.registry,
        )
        self._probe_seconds = Histogram(
            "ubiq_gtm_health_probe_duration_seconds",
            "Health probe latency (connect + status line)",
            ["cluster", "endpoint", "kind"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_HealthCollector(self))
        self._set(targets)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        for key in self._targets:
            self._spawn(key)

    async def stop(self) -> None:
        self._running = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> HealthChecker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def set_targets(self, targets: Iterable[CheckedTarget]) -> None:
        """Replace the target set; unchanged targets keep their state and schedule."""
        before = self._view
        old = dict(self._targets)
        self._set(targets)
        for key, task in list(self._tasks.items()):
            if self._targets.get(key) != old.get(key):
                task.cancel()
                del self._tasks[key]
        if self._running:
            for key in self._targets:
                if key not in self._tasks:
                    self._spawn(key)
        self._view = health_view(self._states)
        if self._view != before:
            self._notify()

    # --- reading ------------------------------------------------------------------------------

    def view(self) -> HealthView:
        return self._view

    def rows(self) -> list[TargetStatus]:
        return [
            TargetStatus(
                cluster=ct.target.cluster,
                region=ct.target.region,
                address=ct.target.address,
                port=ct.target.port,
                kind=ct.check.kind,
                healthy=s.healthy,
                successes=s.successes,
                failures=s.failures,
                last_error=s.last_error,
                last_change=s.last_change,
                last_probe=s.last_probe,
                probes=s.probes,
            )
            for ct, s in self.states()
        ]

    # --- probing ------------------------------------------------------------------------------

    async def check_once(self) -> HealthView:
        """Probe every target once, concurrently (still bounded), and apply the results."""
        await asyncio.gather(*(self._probe_and_apply(ct) for ct in list(self._targets.values())))
        return self._view

    async def _run(self, ct: CheckedTarget) -> None:
        check = ct.check
        await self._sleep(self._rng.uniform(0.0, check.interval * check.jitter))
        while True:
            await self._probe_and_apply(ct)
            spread = self._rng.uniform(-check.jitter, check.jitter)
            await self._sleep(check.interval * (1.0 + spread))

    async def _probe_and_apply(self, ct: CheckedTarget) -> None:
        async with self._sem:
            try:
                result = await self._probe(ct)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a probe bug must not look like a healthy target
                log.exception("gtm.health.probe_error", cluster=ct.target.cluster)
                result = ProbeResult(False, f"probe error: {type(exc).__name__}: {exc}")
        self._apply(ct, result)

    def _apply(self, ct: CheckedTarget, result: ProbeResult) -> None:
        key = ct.key
        if self._targets.get(key) != ct:  # removed or reconfigured while the probe ran
            return
        endpoint = _endpoint(ct)
        outcome = "success" if result.ok else "failure"
        target = ct.target
        self._probes_total.labels(
            target.cluster, target.region, endpoint, ct.check.kind, outcome
        ).inc()
        self._probe_seconds.labels(ct.target.cluster, endpoint, ct.check.kind).observe(
            result.latency
        )
        old = self._states[key]
        new = observe(old, result.ok, result.error, self._clock(), ct.check)
        self._states[key] = new
        if new.healthy != old.healthy:
            to = "healthy" if new.healthy else "unhealthy"
            self._transitions.labels(target.cluster, target.region, endpoint, to).inc()
            (log.info if new.healthy else log.warning)(
                "gtm.health.change",
                cluster=ct.target.cluster,
                endpoint=endpoint,
                healthy=new.healthy,
                error=result.error,
            )
            self._view = health_view(self._states)
            self._notify()

    async def _default_probe(self, ct: CheckedTarget) -> ProbeResult:
        tls = None
        if ct.check.kind == "https":
            key = (ct.check.verify_tls, ct.check.ca_file)
            tls = self._tls.get(key)
            if tls is None:
                tls = self._tls[key] = health_probes.make_tls_context(*key)
        return await health_probes.probe(ct, tls)

    # --- helpers ------------------------------------------------------------------------------

    def _set(self, targets: Iterable[CheckedTarget]) -> None:
        self._targets = {ct.key: ct for ct in targets}
        for ct in self._targets.values():  # every target's series exist (at 0) from the start
            labels = (ct.target.cluster, ct.target.region, _endpoint(ct))
            for result in ("success", "failure"):
                self._probes_total.labels(*labels, ct.check.kind, result)
            for to in ("healthy", "unhealthy"):
                self._transitions.labels(*labels, to)
        self._states = {k: self._states.get(k, TargetHealth()) for k in self._targets}
        self._view = health_view(self._states)

    def _spawn(self, key: TargetKey) -> None:
        ct = self._targets[key]
        self._tasks[key] = asyncio.create_task(self._run(ct), name=f"health {_endpoint(ct)}")

    def _notify(self) -> None:
        try:
            self._on_change(self._view)
        except Exception:
            log.exception("gtm.health.on_change_failed")

    def states(self) -> Iterator[tuple[CheckedTarget, TargetHealth]]:
        for key, ct in list(self._targets.items()):
            yield ct, self._states[key]


class _HealthCollector(Collector):
    """Current health read from the live state at scrape time."""

    def __init__(self, checker: HealthChecker) -> None:
        self._checker = checker

    def collect(self) -> Iterable[Metric]:
        healthy = GaugeMetricFamily(
            "ubiq_gtm_target_healthy",
            "1 if the target is healthy, 0 if unhealthy; absent until decided",
            labels=["cluster", "region", "endpoint"],
        )
        failures = GaugeMetricFamily(
            "ubiq_gtm_target_consecutive_failures",
            "Consecutive failed probes of the target",
            labels=["cluster", "region", "endpoint"],
        )
        for ct, state in self._checker.states():
            labels = [ct.target.cluster, ct.target.region, _endpoint(ct)]
            if state.healthy is not None:
                healthy.add_metric(labels, 1.0 if state.healthy else 0.0)
            failures.add_metric(labels, float(state.failures))
        yield healthy
        yield failures


def _endpoint(ct: CheckedTarget) -> str:
    address = ct.target.address
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{ct.probe_port}"
