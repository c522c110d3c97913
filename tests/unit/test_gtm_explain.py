"""explain(): the Decision and its inputs, as text and as a JSON-ready dict."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace

from controlplane.gtm.explain import explain, explain_client, explain_dict
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.steering import steer
from controlplane.gtm.types import ClientGroup, HealthView, Placed, SteeringPolicy, Target

EU = Target("eu-1", "eu-west", "192.0.2.1", 443)
US = Target("us-1", "us-west", "192.0.2.2", 443)
GROUP = ClientGroup("eu", (ipaddress.ip_network("203.0.113.0/24"),), region="eu-west")
POLICY = SteeringPolicy(
    name="app.gtm.example",
    zone="gtm.example",
    strategy="lowestLatency",
    targets=(EU, US),
    ttl=10,
    latency={"eu": {"eu-west": 12.0, "us-west": 140.0}},
)


def _health_eu_down() -> HealthView:
    keys = {(t.cluster, t.address, t.port) for t in (EU, US)}
    eu = (EU.cluster, EU.address, EU.port)
    return HealthView(frozenset(keys - {eu}), frozenset(keys), {eu: "3 failed probes: timeout"})


def test_text_names_answer_reasons_and_target_states() -> None:
    health = _health_eu_down()
    decision = steer(POLICY, GROUP, health)
    text = explain(POLICY, GROUP, health, decision, client="203.0.113.7")
    lines = text.splitlines()
    assert lines[0] == "app.gtm.example for client 203.0.113.7 (group eu, region eu-west)"
    assert "answer: 192.0.2.2 (us-west)" in lines
    assert "  - group eu: latency us-west 140ms" in lines
    assert "  - eu-west unhealthy (3 failed probes: timeout)" in lines
    eu_row = next(line for line in lines if "192.0.2.1:443" in line)
    us_row = next(line for line in lines if "192.0.2.2:443" in line)
    assert "UNHEALTHY (3 failed probes: timeout)" in eu_row and "12ms" in eu_row
    assert us_row.lstrip().startswith("*") and "healthy" in us_row


def test_text_for_servfail_and_unchecked_targets() -> None:
    policy = SteeringPolicy(
        "x.gtm.example", "gtm.example", "failover", (EU,), 5, all_down="servfail"
    )
    eu = (EU.cluster, EU.address, EU.port)
    health = HealthView(frozenset(), frozenset({eu}))
    text = explain(policy, GROUP, health, steer(policy, GROUP, health))
    assert "answer: SERVFAIL" in text
    text = explain(
        policy, GROUP, HealthView(frozenset()), steer(policy, GROUP, HealthView(frozenset()))
    )
    assert "healthy (not checked)" in text
    assert "same for every client (scope 0)" in text


def test_dict_is_json_ready_and_complete() -> None:
    health = _health_eu_down()
    decision = steer(POLICY, GROUP, health, epoch=4)
    data = explain_dict(POLICY, GROUP, health, decision, client="203.0.113.7")
    assert json.loads(json.dumps(data)) == data
    assert data["answer"]["addresses"] == ["192.0.2.2"]
    assert data["answer"]["epoch"] == 4
    assert data["group"]["networks"] == ["203.0.113.0/24"]
    by_cluster = {t["cluster"]: t for t in data["targets"]}
    assert by_cluster["eu-1"]["healthy"] is False
    assert by_cluster["eu-1"]["detail"] == "3 failed probes: timeout"
    assert by_cluster["us-1"]["answered"] is True
    assert by_cluster["us-1"]["latency_ms"] == 140.0
    assert data["reasons"] == list(decision.reasons)


def test_explain_client_finds_the_group_like_the_dns_server() -> None:
    health = _health_eu_down()
    us = ClientGroup("us", (ipaddress.ip_network("198.51.100.0/24"),), region="us-west")
    got = explain_client(POLICY, ClientGroups([GROUP, us]), health, "203.0.113.7", epoch=2)
    assert got.group == GROUP
    assert got.decision == steer(POLICY, GROUP, health, epoch=2)
    assert got.text.startswith("app.gtm.example for client 203.0.113.7 (group eu")
    assert got.data["client"] == "203.0.113.7"
    other = explain_client(POLICY, ClientGroups([GROUP, us]), health, "192.0.2.99")
    assert other.group.name == "default"
    assert "no latency data for group default" in other.text


def test_explain_client_shows_the_minimum_dwell_holding_the_answer() -> None:
    """The dwell is the placement's (a group's choice held against a better region); explain
    shows the placement's reasons and when the dwell ends."""
    health = HealthView(frozenset())
    policy = replace(POLICY, service="app")
    groups = ClientGroups([GROUP])
    us_first = replace(policy, latency={"eu": {"eu-west": 140.0, "us-west": 12.0}})
    previous = steer(us_first, GROUP, health, epoch=1, now=1000.0)
    hold = Placed(
        regions=("us-west",),
        fallback=("eu-west",),
        rule="hold.dwell",
        reasons=("holding us-west until 1030.0 (minDwell 30s); deciding again then",),
        dwell_until=1030.0,
    )
    placed = {(policy.name, GROUP.name): hold}
    held = explain_client(
        policy, groups, health, "203.0.113.7", previous=previous, now=1010.0, placed=placed
    )
    assert held.decision.addresses == (US.address,)
    assert "placement (hold.dwell): us-west (then eu-west)" in held.text
    assert "holding us-west until 1030.0 (minDwell 30s)" in held.text
    assert "answered for 10.0s now; minimum dwell ends in 20.0s" in held.text
    assert held.data["policy"]["service"] == "app"
    assert held.data["answer"]["since"] == 1000.0
    assert held.data["answer"]["dwell_until"] == 1030.0
    moved_on = {(policy.name, GROUP.name): Placed(regions=("eu-west",), rule="lowestLatency")}
    moved = explain_client(
        policy, groups, health, "203.0.113.7", previous=previous, now=1030.0, placed=moved_on
    )
    assert moved.decision.addresses == (EU.address,)
    assert moved.data["answer"]["dwell_until"] is None
