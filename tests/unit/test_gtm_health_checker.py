"""HealthChecker scheduling, notifications, snapshot and metrics with an injected probe (no sockets)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from controlplane.gtm.health.checker import HealthChecker
from controlplane.gtm.health.state import CheckedTarget, HealthCheck, ProbeResult
from controlplane.gtm.types import HealthView, Target

CHECK = HealthCheck(interval=1.0, healthy_threshold=1, unhealthy_threshold=2, jitter=0.2)
A = CheckedTarget(Target("a", "eu-west", "192.0.2.1", 80), CHECK)
B = CheckedTarget(Target("b", "us-west", "192.0.2.2", 80), CHECK)


class Script:
    """Probe results per cluster, in order; the last one repeats."""

    def __init__(self, **results: list[bool]) -> None:
        self.results = {k: list(v) for k, v in results.items()}
        self.calls: list[str] = []

    async def __call__(self, ct: CheckedTarget) -> ProbeResult:
        self.calls.append(ct.target.cluster)
        queue = self.results[ct.target.cluster]
        ok = queue.pop(0) if len(queue) > 1 else queue[0]
        return ProbeResult(ok, None if ok else "connection refused", 200 if ok else None, 0.003)


def checker(
    probe: Callable[[CheckedTarget], object], views: list[HealthView], **kw: object
) -> HealthChecker:
    return HealthChecker(
        [A, B],
        views.append,
        registry=CollectorRegistry(),
        clock=lambda: 1000.0,
        probe=probe,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


async def test_state_changes_call_on_change_with_the_new_view() -> None:
    views: list[HealthView] = []
    hc = checker(Script(a=[True, False, False, True], b=[True]), views)
    assert hc.view() == HealthView(frozenset())
    await hc.check_once()  # both healthy (threshold 1)
    assert len(views) == 2
    assert views[-1].healthy == {A.key, B.key}
    await hc.check_once()  # a: 1 failure, below the threshold: no change
    assert len(views) == 2
    await hc.check_once()  # a: 2 failures -> unhealthy
    assert len(views) == 3
    assert views[-1].healthy == {B.key} and views[-1].known == {A.key, B.key}
    assert views[-1].detail[A.key] == "2 failed probes: connection refused"
    await hc.check_once()
    assert views[-1].healthy == {A.key, B.key}
    assert hc.view() == views[-1]


async def test_snapshot_rows_for_the_api() -> None:
    views: list[HealthView] = []
    hc = checker(Script(a=[False], b=[True]), views)
    await hc.check_once()
    await hc.check_once()
    rows = {r.cluster: r.as_dict() for r in hc.rows()}
    assert rows["a"] == {
        "cluster": "a",
        "region": "eu-west",
        "address": "192.0.2.1",
        "port": 80,
        "kind": "http",
        "healthy": False,
        "successes": 0,
        "failures": 2,
        "last_error": "connection refused",
        "last_change": 1000.0,
        "last_probe": 1000.0,
        "probes": 2,
    }
    assert rows["b"]["healthy"] is True and rows["b"]["successes"] == 2


async def test_metrics_in_the_given_registry() -> None:
    registry = CollectorRegistry()
    hc = HealthChecker([A, B], lambda v: None, registry=registry, probe=Script(a=[False], b=[True]))
    for _ in range(3):
        await hc.check_once()
    get = registry.get_sample_value
    a = {"cluster": "a", "endpoint": "192.0.2.1:80", "kind": "http"}
    where_a = {"cluster": "a", "region": "eu-west", "endpoint": "192.0.2.1:80"}
    where_b = {"cluster": "b", "region": "us-west", "endpoint": "192.0.2.2:80"}
    probes_a = {**where_a, "kind": "http"}
    assert get("ubiq_gtm_health_probes_total", {**probes_a, "result": "failure"}) == 3
    assert get("ubiq_gtm_health_probes_total", {**probes_a, "result": "success"}) == 0
    assert get("ubiq_gtm_health_probe_duration_seconds_count", a) == 3
    # the first decision is a transition too; the other direction reads 0, not absent
    assert get("ubiq_gtm_health_transitions_total", {**where_a, "to": "unhealthy"}) == 1
    assert get("ubiq_gtm_health_transitions_total", {**where_a, "to": "healthy"}) == 0
    assert get("ubiq_gtm_health_transitions_total", {**where_b, "to": "healthy"}) == 1
    assert get("ubiq_gtm_target_healthy", where_a) == 0.0
    assert get("ubiq_gtm_target_healthy", where_b) == 1.0
    assert get("ubiq_gtm_target_consecutive_failures", where_a) == 3.0


async def test_probe_exception_is_a_failure_and_on_change_errors_are_contained() -> None:
    async def broken(ct: CheckedTarget) -> ProbeResult:
        raise RuntimeError("boom")

    calls: list[HealthView] = []

    def on_change(view: HealthView) -> None:
        calls.append(view)
        raise ValueError("table rebuild failed")

    hc = HealthChecker([A], on_change, registry=CollectorRegistry(), probe=broken)
    await hc.check_once()
    await hc.check_once()
    assert len(calls) == 1
    (row,) = hc.rows()
    assert row.healthy is False and row.last_error == "probe error: RuntimeError: boom"


async def test_bounded_concurrency() -> None:
    in_flight = 0
    peak = 0
    two_at_once = asyncio.Event()  # the first probe waits for a second: overlap is certain

    async def slow(ct: CheckedTarget) -> ProbeResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight >= 2:
            two_at_once.set()
        await two_at_once.wait()
        in_flight -= 1
        return ProbeResult(True)

    targets = [CheckedTarget(Target(f"c{i}", "r", f"192.0.2.{i + 1}", 80), CHECK) for i in range(7)]
    hc = HealthChecker(
        targets, lambda v: None, registry=CollectorRegistry(), probe=slow, max_concurrency=2
    )
    await asyncio.wait_for(hc.check_once(), 5)
    assert peak == 2
    assert all(r.healthy for r in hc.rows())


async def test_schedule_uses_interval_and_seeded_jitter() -> None:
    delays: list[float] = []
    probed = asyncio.Event()
    script = Script(a=[True])

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) >= 4:
            probed.set()
            await asyncio.Event().wait()  # park here until stop() cancels
        await asyncio.sleep(0)

    hc = HealthChecker(
        [A],
        lambda v: None,
        registry=CollectorRegistry(),
        sleep=fake_sleep,
        rng=random.Random(7),
        probe=script,
    )
    async with hc:
        await asyncio.wait_for(probed.wait(), 5)
    expected = random.Random(7)
    first = expected.uniform(0.0, CHECK.interval * CHECK.jitter)
    rest = [CHECK.interval * (1 + expected.uniform(-CHECK.jitter, CHECK.jitter)) for _ in range(3)]
    assert delays == [first, *rest]
    assert all(0.8 <= d <= 1.2 for d in rest)
    assert script.calls == ["a", "a", "a"]


async def test_set_targets_keeps_state_and_notifies_on_removal() -> None:
    views: list[HealthView] = []
    hc = checker(Script(a=[False], b=[True], c=[True]), views)
    await hc.check_once()
    await hc.check_once()
    assert views[-1].known == {A.key, B.key}
    n = len(views)
    c = CheckedTarget(Target("c", "ap-south", "192.0.2.3", 80), CHECK)
    hc.set_targets([B, c])
    assert len(views) == n + 1
    assert views[-1].known == {B.key}  # a's state went with it; c is undecided
    rows = {r.cluster: r for r in hc.rows()}
    assert rows["b"].probes == 2 and rows["c"].probes == 0
    hc.set_targets([B, c])
    assert len(views) == n + 1  # nothing changed, nobody told


async def test_running_tasks_follow_set_targets() -> None:
    started: list[str] = []
    seen = {"a": asyncio.Event(), "c": asyncio.Event()}

    async def probe(ct: CheckedTarget) -> ProbeResult:
        started.append(ct.target.cluster)
        seen[ct.target.cluster].set()
        return ProbeResult(True)

    async def sleep(delay: float) -> None:
        await asyncio.sleep(0.001)

    hc = HealthChecker([A], lambda v: None, registry=CollectorRegistry(), probe=probe, sleep=sleep)
    async with hc:
        await asyncio.wait_for(seen["a"].wait(), 5)
        c = CheckedTarget(Target("c", "ap-south", "192.0.2.3", 80), CHECK)
        hc.set_targets([c])
        await asyncio.wait_for(seen["c"].wait(), 5)
        count_a = started.count("a")
        await asyncio.sleep(0.02)
        assert started.count("a") == count_a  # a's task was cancelled
        assert started.count("c") > 1
