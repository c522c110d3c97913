"""plan.py end to end without sockets: policy YAML -> plan -> answer table -> DNS answers.

Also the GeoIP path: a tiny MaxMind database written by the test becomes client groups, and a
missing or corrupt one leaves the CIDR groups answering.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from controlplane.errors import GtmError
from controlplane.gtm.dns.answer import Client, answer
from controlplane.gtm.from_model import client_groups, geo_databases, geo_regions
from controlplane.gtm.geo_load import GeoDatabases
from controlplane.gtm.geoip import MaxMindRegions, RegionSource
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
from controlplane.gtm.types import HealthView
from controlplane.placement.consumers import decided_services
from controlplane.placement.engine import decide_all
from controlplane.policy.model import Model
from tests.support.gtm_helpers import write_mmdb
from tests.support.policy import doc, load

EU, US = "127.0.0.12", "127.0.0.13"
EU_KEY, US_KEY = ("eu-west", EU, 8443), ("us-west", US, 8443)
CONFIG = GtmConfig(ns_addresses=("192.0.2.53", "2001:db8::53"))
ALL_HEALTHY = HealthView(frozenset())


def global_service(*, groups: str | None = None, extra: str = "") -> str:
    groups = groups or (
        "- {name: europe, cidrs: [203.0.113.0/24], region: eu-west}\n"
        "- {name: america, cidrs: [198.51.100.0/24], region: us-west}"
    )
    spec = "\n".join(
        [
            "name: web.gtm.example",
            "zone: gtm.example",
            "service: web",
            "strategy: geo",
            "ttl: 10s",
            "port: 8443",
            "targets: [{cluster: eu-west}, {cluster: us-west, tier: 1}]",
            "healthCheck: {tcp: {}, interval: 1s, timeout: 500ms, unhealthyThreshold: 3}",
            "clientGroups:",
            groups,
            extra,
        ]
    )
    return doc("GlobalService", "web", spec)


def model(**kwargs: str) -> Model:
    return load(global_service(**kwargs))


def ask(
    plan: DecidedPlan, source: str, name: str = "web.gtm.example", rtype: str = "A"
) -> list[str]:
    assert plan.table is not None
    query = dns.message.make_query(name, rtype)
    wire = answer(query.to_wire(), plan.table, Client(source))
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.rcode() == dns.rcode.NOERROR
    return sorted(str(rr) for rrset in response.answer for rr in rrset)


def decided(m: Model, health: HealthView | None = None, **kwargs: object) -> DecidedPlan:
    base = plan_from_model(m, CONFIG, **kwargs)  # type: ignore[arg-type]
    return decide(base, health or HealthView(frozenset()), epoch=1, config=CONFIG)


def test_model_to_answers_per_client_group() -> None:
    plan = decided(model())
    assert ask(plan, "203.0.113.9") == [EU]
    assert ask(plan, "198.51.100.9") == [US]
    assert ask(plan, "10.9.9.9") == [EU]  # default group: failover order, tier 0 first
    assert set(plan.decisions) == {("web.gtm.example", g) for g in ("europe", "america", "default")}


def test_zone_apex_soa_ns_and_glue_from_config() -> None:
    plan = decided(model())
    assert ask(plan, "10.0.0.1", "gtm.example", "NS") == ["ns1.gtm.example."]
    assert ask(plan, "10.0.0.1", "ns1.gtm.example", "A") == ["192.0.2.53"]
    assert ask(plan, "10.0.0.1", "ns1.gtm.example", "AAAA") == ["2001:db8::53"]
    soa = ask(plan, "10.0.0.1", "gtm.example", "SOA")
    assert len(soa) == 1 and soa[0].startswith("ns1.gtm.example. hostmaster.gtm.example.")


def test_health_checks_planned_once_per_target() -> None:
    plan = plan_from_model(model(), CONFIG)
    assert sorted(c.key for c in plan.checked) == sorted([EU_KEY, US_KEY])
    check = plan.checked[0].check
    assert (check.kind, check.interval, check.unhealthy_threshold) == ("tcp", 1.0, 3)


def test_health_change_changes_answers() -> None:
    m = model()
    known = frozenset({EU_KEY, US_KEY})
    eu_down = decided(m, HealthView(frozenset({US_KEY}), known))
    assert ask(eu_down, "203.0.113.9") == [US]
    assert ask(eu_down, "198.51.100.9") == [US]
    back = decided(m, HealthView(known, known))
    assert ask(back, "203.0.113.9") == [EU]
    all_down = decided(m, HealthView(frozenset(), known))  # allDown answerAll
    assert ask(all_down, "203.0.113.9") == [EU, US]


# --- GeoIP databases ---------------------------------------------------------------------------


@pytest.fixture
def mmdb(tmp_path: Path) -> Path:
    networks = [
        ("10.20.0.0/16", {"region": "eu-west"}),
        ("10.30.0.0/16", {"region": "us-west"}),
        ("10.40.0.0/16", {"region": "ap-south"}),  # no target there
        ("198.51.100.0/24", {"region": "eu-west"}),  # policy wins
        ("2001:db8:20::/48", {"region": "eu-west"}),
    ]
    return write_mmdb(tmp_path / "regions.mmdb", networks)


def test_geo_database_regions_become_client_groups(mmdb: Path) -> None:
    m = model(extra=f"geoDatabase: {mmdb}")
    assert geo_databases(m) == (str(mmdb),)
    assert geo_regions(m) == {"eu-west", "us-west"}
    geo = GeoDatabases().load(m)
    assert geo.errors == ()
    assert sorted(g.region or "" for g in geo.groups) == ["eu-west", "us-west"]
    plan = decided(m, geo_groups=geo.groups)
    by_name = {g.name: g for g in plan.groups}
    assert set(by_name) == {"europe", "america"}  # database networks joined the declared groups
    assert ask(plan, "10.20.1.1") == [EU]
    assert ask(plan, "10.30.1.1") == [US]
    assert ask(plan, "2001:db8:20::7") == [EU]
    assert ask(plan, "10.40.1.1") == [EU]  # ap-south is not a region here: default group
    assert ask(plan, "198.51.100.9") == [US]  # the policy's own CIDR wins over the database


def test_geo_region_without_declared_group_gets_its_own(mmdb: Path) -> None:
    only_europe = "- {name: europe, cidrs: [203.0.113.0/24], region: eu-west}"
    m = model(groups=only_europe, extra=f"geoDatabase: {mmdb}")
    plan = decided(m, geo_groups=GeoDatabases().load(m).groups)
    assert {g.name: g.region for g in plan.groups} == {"europe": "eu-west", "us-west": "us-west"}
    assert ask(plan, "10.30.1.1") == [US]  # geo strategy: the group's own region
    assert ask(plan, "198.51.100.9") == [EU]  # no policy group claims it: the database does


def test_relative_database_path_is_relative_to_the_policy_file(tmp_path: Path) -> None:
    from controlplane.policy.loader import load_texts
    from tests.support.policy import BASE

    policy_file = tmp_path / "policies" / "global.yaml"
    m = load_texts(
        [
            ("base.yaml", BASE),
            (str(policy_file), global_service(extra="geoDatabase: ../geo/regions.mmdb")),
        ]
    )
    assert geo_databases(m) == (str(tmp_path / "geo" / "regions.mmdb"),)


def test_missing_or_corrupt_database_keeps_cidr_groups(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mmdb"
    corrupt.write_bytes(b"\x00not a maxmind database" * 100)
    for path in (tmp_path / "missing.mmdb", corrupt):
        m = model(extra=f"geoDatabase: {path}")
        geo = GeoDatabases().load(m)
        assert geo.groups == () and len(geo.errors) == 1 and str(path) in geo.errors[0]
        plan = decided(m, geo_groups=geo.groups)
        assert plan.groups == client_groups(m)
        assert ask(plan, "203.0.113.9") == [EU]


def test_database_read_once_until_the_file_changes(mmdb: Path) -> None:
    opened: list[str] = []

    def opener(path: str) -> RegionSource:
        opened.append(path)
        return MaxMindRegions(path)

    dbs = GeoDatabases(opener)
    m = model(extra=f"geoDatabase: {mmdb}")
    first = dbs.load(m)
    assert dbs.load(m) == first and len(opened) == 1
    mmdb.write_bytes(b"garbage")  # a broken replacement is reported; the last good one serves
    again = dbs.load(m)
    assert again.groups == first.groups and len(opened) == 2
    assert len(again.errors) == 1 and "keeping the database read before" in again.errors[0]


def test_aliases_are_cnames_to_the_global_name() -> None:
    plan = decided(model(extra="aliases: [shop.gtm.example, www.gtm.example]"))
    assert ask(plan, "203.0.113.9", "shop.gtm.example") == sorted([EU, "web.gtm.example."])
    assert ask(plan, "198.51.100.9", "www.gtm.example") == sorted([US, "web.gtm.example."])


async def test_served_answers_are_metrics() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from controlplane.gtm.runtime import GtmRuntime

    registry = CollectorRegistry()
    runtime = GtmRuntime(CONFIG, registry=registry)
    await runtime.start(model())
    text = generate_latest(registry).decode()
    assert (
        'ubiq_gtm_answer{address="127.0.0.12",group="europe",name="web.gtm.example",region="eu-west"} 1.0'
        in text
    )
    assert 'ubiq_gtm_all_down{group="america",name="web.gtm.example"} 0.0' in text
    assert "ubiq_gtm_rebuilds_total 1.0" in text
    # every (name, region) a failover can be counted for reads 0 before the first one
    assert 'ubiq_gtm_failovers_total{name="web.gtm.example",region="eu-west"} 0.0' in text


async def test_runtime_rebuilds_off_the_loop_and_coalesces_bursts() -> None:
    from controlplane.gtm.runtime import GtmRuntime

    runtime = GtmRuntime(CONFIG)
    runtime.update_model(model())  # inside the loop: scheduled, not yet applied
    assert runtime.plan is None
    known = frozenset({EU_KEY, US_KEY})
    for i in range(20):  # a burst of health flaps, ending with eu-west down
        runtime.update_health(HealthView(known if i % 2 else frozenset({US_KEY}), known))
    runtime.update_health(HealthView(frozenset({US_KEY}), known))
    assert runtime._worker is not None
    await asyncio.wait_for(runtime._worker, 10)
    assert runtime.plan is not None
    assert ask(runtime.plan, "203.0.113.9") == [US]  # the newest health won
    assert runtime.epoch <= 3  # 21 requests became at most a few rebuilds


def soa_serial(plan: DecidedPlan | None) -> int:
    assert plan is not None and plan.table is not None
    query = dns.message.make_query("gtm.example", "SOA")
    wire = answer(query.to_wire(), plan.table, Client("10.0.0.1"))
    assert wire is not None
    rrset = dns.message.from_wire(wire).answer[0]
    return int(rrset[0].serial)


async def test_soa_serial_moves_with_every_rebuild() -> None:
    from controlplane.gtm.runtime import GtmRuntime

    runtime = GtmRuntime(CONFIG, clock=lambda: 1_700_000_000.0)
    await runtime.start(model())
    first = soa_serial(runtime.plan)
    runtime.update_health(HealthView(frozenset({US_KEY}), frozenset({EU_KEY, US_KEY})))
    await asyncio.wait_for(runtime.settled(), 10)
    second = soa_serial(runtime.plan)
    assert first == 1_700_000_000  # the time of the computation
    assert second > first  # same second: still one more


async def test_a_failing_rebuild_keeps_the_table_and_the_worker_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from controlplane.gtm import runtime as runtime_module

    runtime = runtime_module.GtmRuntime(CONFIG)
    runtime.update_model(model())
    assert runtime._worker is not None
    await asyncio.wait_for(runtime._worker, 10)
    good = runtime.plan
    assert good is not None

    def broken(*args: object, **kwargs: object) -> DecidedPlan:
        raise RuntimeError("bug in steering")

    monkeypatch.setattr(runtime_module, "decide", broken)
    known = frozenset({EU_KEY, US_KEY})
    runtime.update_health(HealthView(frozenset({US_KEY}), known))
    await asyncio.wait_for(runtime._worker, 10)
    assert runtime.plan is good  # the old table keeps answering
    monkeypatch.undo()
    runtime.update_health(HealthView(frozenset({US_KEY}), known))
    await asyncio.wait_for(runtime._worker, 10)
    assert runtime.plan is not good
    assert ask(runtime.plan, "203.0.113.9") == [US]


async def test_explain_uses_the_health_the_plan_was_decided_with() -> None:
    from controlplane.gtm.runtime import GtmRuntime

    runtime = GtmRuntime(CONFIG)
    await runtime.start(model())
    runtime._health = HealthView(frozenset({US_KEY}), frozenset({EU_KEY, US_KEY}))  # not applied
    data = runtime.explain("web.gtm.example", "203.0.113.9")
    assert isinstance(data, dict)
    assert data["answer"]["addresses"] == [EU]
    assert all(t["healthy"] for t in data["targets"])  # agrees with the answer shown
    assert runtime.plan is not None and runtime.plan.health == HealthView(frozenset())


def test_next_rotation_only_for_rotating_policies() -> None:
    base = plan_from_model(model(), CONFIG)
    assert next_rotation(base, 1234.5) is None  # geo: answers move with health only
    round_robin = load(global_service().replace("strategy: geo", "strategy: roundRobin"))
    rr = plan_from_model(round_robin, CONFIG)
    assert next_rotation(rr, 1234.5) == pytest.approx(5.5)  # ttl 10s: next slot at 1240


async def test_model_updates_are_planned_in_the_worker_and_a_bad_one_keeps_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from controlplane.gtm import runtime as runtime_module

    threads: list[int] = []
    real = plan_from_model

    def recording(*args: Any, **kwargs: Any) -> GtmPlan:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime_module, "plan_from_model", recording)
    runtime = runtime_module.GtmRuntime(CONFIG)
    runtime.update_model(model())
    assert runtime.plan is None and not threads  # nothing done on the loop yet
    assert runtime._worker is not None
    await asyncio.wait_for(runtime._worker, 10)
    good = runtime.plan
    assert good is not None and threads and threading.get_ident() not in threads

    def broken(*args: object, **kwargs: object) -> GtmPlan:
        raise GtmError("overlapping client groups")

    monkeypatch.setattr(runtime_module, "plan_from_model", broken)
    runtime.update_model(model())
    await asyncio.wait_for(runtime._worker, 10)
    assert runtime.plan is not None and runtime.plan.decisions == good.decisions


def test_client_groups_are_built_once_per_model_and_shared() -> None:
    base = plan_from_model(model(), CONFIG)
    plan = decide(base, HealthView(frozenset()), epoch=1)
    assert plan.client_groups is base.client_groups
    assert plan.table is not None and plan.table.groups is base.client_groups
    assert plan.group_for("203.0.113.9").name == "europe"
    assert plan.group_for("192.0.2.1").name == "default"
    assert plan.group_for("not an address").networks == ()


# --- lowestLatency minimum dwell from the Placement's hysteresis --------------------------------


def latency_model(eu_ms: int, us_ms: int, *, placement: bool = True) -> Model:
    spec = "\n".join(
        [
            "name: web.gtm.example",
            "zone: gtm.example",
            "service: web",
            "strategy: lowestLatency",
            "ttl: 10s",
            "port: 8443",
            "targets: [{cluster: eu-west}, {cluster: us-west}]",
            "clientGroups: [{name: europe, cidrs: [203.0.113.0/24], region: eu-west}]",
            f"latency: {{europe: {{eu-west: {eu_ms}ms, us-west: {us_ms}ms}}}}",
        ]
    )
    docs = [doc("GlobalService", "web", spec)]
    if placement:
        docs.append(
            doc(
                "Placement",
                "web",
                "service: web\nclusters: [eu-west, us-west]\n"
                "tolerations: [{key: maintenance, operator: Exists}]\n"
                "strategy: {type: lowestLatency, hysteresis: {minDwell: 45s, thresholdPercent: 5}}",
            )
        )
    return load(*docs)


def placed_plan(
    m: Model,
    now: float,
    *,
    health: HealthView = ALL_HEALTHY,
    previous: tuple[DecidedPlan, Choices] | None = None,
) -> tuple[DecidedPlan, Choices]:
    """What the GTM serves for ``m`` at ``now``: the placement step (no signals), each group's
    regions from its Decision, then steering within them."""
    base = plan_from_model(m, CONFIG)
    decisions = decide_all(m, now=now, services=decided_services(m))
    choices = place_groups(
        base, m, decisions, now=now, previous=previous[1] if previous is not None else None
    )
    plan = decide(
        base,
        health,
        epoch=1,
        previous=previous[0].decisions if previous is not None else None,
        now=now,
        placed=as_placed(choices),
    )
    return plan, choices


def test_the_placements_hysteresis_damps_the_gtm_answers() -> None:
    """The Placement's hysteresis (minDwell 45s, thresholdPercent 5) reaches the GTM through the
    group choices; a GlobalService without a Placement has no Decision to follow."""
    first = placed_plan(latency_model(10, 100), 1000.0)
    europe = first[1]["web.gtm.example"]["europe"]
    assert europe.regions == (("eu-west", 100),)
    assert europe.dwell_until - europe.since == 45.0
    inside = placed_plan(latency_model(100, 96), 2000.0, previous=first)  # 4% better: kept
    assert ask(inside[0], "203.0.113.9") == [EU]
    outside = placed_plan(latency_model(100, 94), 2000.0, previous=first)  # 6% better: moves
    assert ask(outside[0], "203.0.113.9") == [US]
    bare = latency_model(10, 100, placement=False)
    assert decided_services(bare) == frozenset()
    assert placed_plan(bare, 1000.0)[1] == {}


def test_min_dwell_holds_the_answer_across_model_changes_until_it_passes() -> None:
    served = placed_plan(latency_model(10, 100), 1000.0)
    assert ask(served[0], "203.0.113.9") == [EU]
    flipped = latency_model(100, 10)
    for now in [1000.0, 1000.0, 1020.0, 1044.0]:
        served = placed_plan(flipped, now, previous=served)
        assert ask(served[0], "203.0.113.9") == [EU]
    assert next_dwell_expiry(served[0]) == 1045.0
    served = placed_plan(flipped, 1045.0, previous=served)
    assert ask(served[0], "203.0.113.9") == [US]


async def test_runtime_follows_the_decision_when_its_dwell_ends() -> None:
    """The issue's start: eu-west turns healthy a moment before the better us-west; the
    placement Decision's dwell holds eu-west (explain says until when); when it ends the
    placement step decides again (the loop's timer) and the GTM follows."""
    from controlplane.gtm.runtime import GtmRuntime

    m = latency_model(100, 10)
    clock = [1000.0]
    runtime = GtmRuntime(CONFIG, clock=lambda: clock[0])
    runtime.update_model(m)
    known = frozenset({EU_KEY, US_KEY})
    d0 = decide_all(m, now=1000.0, health={"eu-west": True, "us-west": False})
    runtime.update_placement(d0)
    runtime.update_health(HealthView(frozenset({EU_KEY}), known))
    await asyncio.wait_for(runtime.settled(), 10)
    assert runtime.plan is not None and ask(runtime.plan, "203.0.113.9") == [EU]
    clock[0] = 1000.005
    d1 = decide_all(m, now=clock[0], health={"eu-west": True, "us-west": True}, previous=d0)
    assert d1["web"].reason.rule == "hold.dwell" and d1["web"].next_decision_at == 1045.0
    runtime.update_placement(d1)
    runtime.update_health(HealthView(known, known))
    await asyncio.wait_for(runtime.settled(), 10)
    assert ask(runtime.plan, "203.0.113.9") == [EU]  # held by the 45 s dwell
    assert runtime.next_wake() == 1045.0

    clock[0] = 1030.0  # explain dates the answer against the clock now, not the decision's
    why = runtime.explain("web.gtm.example", "203.0.113.9")
    assert isinstance(why, dict)
    assert why["answer"]["answered_for_s"] == 30.0 and why["answer"]["dwell_ends_in_s"] == 15.0
    assert any(r.startswith("service decision (hold.dwell)") for r in why["reasons"])
    text = runtime.explain_text("web.gtm.example", "203.0.113.9")
    assert "answered for 30.0s now; minimum dwell ends in 15.0s" in str(text)

    clock[0] = 1045.0
    d2 = decide_all(m, now=clock[0], health={"eu-west": True, "us-west": True}, previous=d1)
    runtime.update_placement(d2)
    runtime.wake()
    await asyncio.wait_for(runtime.settled(), 10)
    assert ask(runtime.plan, "203.0.113.9") == [US]
    assert runtime.next_wake() is None  # nothing is held any more
    assert runtime.choices["web.gtm.example"]["europe"].source is d2["web"]


async def test_runtime_decides_again_when_a_groups_dwell_ends() -> None:
    """With the Decision unchanged, a group's own dwell (its measured latency moved) is what
    the runtime's timer re-decides at: ``next_wake``, then ``wake``."""
    from controlplane.gtm.runtime import GtmRuntime

    m = latency_model(10, 100)
    clock = [1000.0]
    runtime = GtmRuntime(CONFIG, clock=lambda: clock[0])
    runtime.update_model(m)
    decisions = decide_all(m, now=1000.0)
    runtime.update_placement(decisions)
    await asyncio.wait_for(runtime.settled(), 10)
    assert runtime.plan is not None and ask(runtime.plan, "203.0.113.9") == [EU]
    clock[0] = 1010.0
    runtime.update_placement(decisions, {("europe", "eu-west"): 200.0})  # measured, over typed
    await asyncio.wait_for(runtime.settled(), 10)
    assert ask(runtime.plan, "203.0.113.9") == [EU]
    assert runtime.next_wake() == 1045.0
    clock[0] = 1045.0
    runtime.wake()
    await asyncio.wait_for(runtime.settled(), 10)
    assert ask(runtime.plan, "203.0.113.9") == [US]
    assert runtime.next_wake() is None


async def test_answers_changed_line_names_what_moved() -> None:
    from structlog.testing import capture_logs

    from controlplane.gtm.runtime import GtmRuntime

    runtime = GtmRuntime(CONFIG)
    known = frozenset({EU_KEY, US_KEY})
    with capture_logs() as logs:
        await runtime.start(model())
        runtime.update_health(HealthView(frozenset({US_KEY}), known))  # eu-west goes down
        assert runtime._worker is not None
        await asyncio.wait_for(runtime._worker, 10)
    lines = [e for e in logs if e["event"] == "gtm.answers.changed"]
    assert len(lines) == 2
    first, moved = lines
    assert first["changed"] == len(first["answers"]) == 3  # the first plan: every answer
    # America already had US: only the groups answered with eu-west are listed
    assert moved["answers"] == {"web.gtm.example@default": [US], "web.gtm.example@europe": [US]}
    assert moved["changed"] == 2
