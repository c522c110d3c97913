"""Process-wide metrics (build info, policy reloads) and GTM failover counting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from controlplane.gtm.failovers import failed_over, failover_keys, regions_by_address
from controlplane.gtm.types import Decision, HealthView, SteeringPolicy, Target
from controlplane.observability.process import PolicyCollector, register_process_metrics, version
from controlplane.policy.store import StoreStatus


def test_build_info_and_process_collectors() -> None:
    registry = CollectorRegistry()
    register_process_metrics(registry)
    samples = {s.name: s for m in registry.collect() for s in m.samples}
    assert samples["ubiq_build_info"].value == 1
    assert samples["ubiq_build_info"].labels["version"] == version() != "unknown"
    assert "process_resident_memory_bytes" in samples and "python_info" in samples


def test_policy_reloads_accepted_and_rejected() -> None:
    status = StoreStatus(False, "abc", 3, 1700000000.0, 1700000100.0, (), rejected=2)
    registry = CollectorRegistry()
    registry.register(PolicyCollector(lambda: status))
    get = registry.get_sample_value
    assert get("ubiq_policy_reloads_total", {"result": "accepted"}) == 3
    assert get("ubiq_policy_reloads_total", {"result": "rejected"}) == 2
    assert get("ubiq_policy_last_reload_successful", {}) == 0
    assert get("ubiq_policy_last_reload_success_timestamp_seconds", {}) == 1700000000.0


EU = Target("eu-1", "eu-west", "192.0.2.1", 443)
US = Target("us-1", "us-west", "192.0.2.2", 443)
POLICY = SteeringPolicy("app.gtm.example", "gtm.example", "failover", (EU, US), 10)


@dataclass(frozen=True)
class Decided:
    policies: Mapping[str, SteeringPolicy]
    decisions: Mapping[tuple[str, str], Decision]
    health: HealthView


def plan(regions: tuple[str, ...], healthy: tuple[Target, ...]) -> Decided:
    keys = frozenset((t.cluster, t.address, t.port) for t in healthy)
    known = frozenset((t.cluster, t.address, t.port) for t in (EU, US))
    decision = Decision(POLICY.name, "default", (), regions=regions)
    return Decided(
        {POLICY.name: POLICY}, {(POLICY.name, "default"): decision}, HealthView(keys, known)
    )


def test_a_failover_is_leaving_a_region_with_no_healthy_target() -> None:
    before = plan(("eu-west",), (EU, US)).decisions
    assert failed_over(before, plan(("us-west",), (US,))) == {(POLICY.name, "eu-west")}
    # leaving a healthy region (latency, rotation, an edit) is no failover
    assert failed_over(before, plan(("us-west",), (EU, US))) == set()
    assert failover_keys(plan((), ())) == {(POLICY.name, "eu-west"), (POLICY.name, "us-west")}
    assert regions_by_address({POLICY.name: POLICY}) == {
        EU.address: "eu-west",
        US.address: "us-west",
    }
