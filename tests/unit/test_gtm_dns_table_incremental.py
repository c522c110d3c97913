"""Incremental answer-table builds: after any sequence of health changes, the table built from
the served one (``decide(..., reuse=served)``) equals a full build byte for byte, and a change
that touches one name leaves every other name's answers as they were (the same objects).

dnspython shuffles the records of an RRset when it renders one (``want_shuffle``), so two builds
of the same multi-record answer may differ in order; ``unshuffled`` turns that off here."""

from __future__ import annotations

import ipaddress
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.gtm.dns.encode import WireAnswer
from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.zone import StaticRecord, Zone
from controlplane.gtm.plan import DecidedPlan, GtmPlan, decide
from controlplane.gtm.types import ClientGroup, HealthView, Placed, SteeringPolicy, Target

REGIONS = ("eu-west", "us-west", "ap-south")
STRATEGIES = ("failover", "weighted", "geo", "lowestLatency", "roundRobin")
GROUPS = (
    ClientGroup("g1", (ipaddress.ip_network("203.0.113.0/24"),), region="eu-west"),
    ClientGroup("g2", (ipaddress.ip_network("2001:db8:1::/48"),), region="us-west"),
    ClientGroup("g3", (ipaddress.ip_network("198.51.100.0/24"),)),
)
ZONE = Zone(
    "gtm.example",
    ("ns1.gtm.example",),
    glue={"ns1.gtm.example": ("192.0.2.53",)},
    records=(
        StaticRecord("alias.gtm.example", "CNAME", "n0.gtm.example.", 30),
        StaticRecord("deep.alias2.gtm.example", "CNAME", "alias.gtm.example.", 30),
        StaticRecord("away.gtm.example", "CNAME", "www.elsewhere.example.", 30),
        StaticRecord("mail.gtm.example", "MX", "10 mx.gtm.example.", 30),
        StaticRecord("mx.gtm.example", "A", "192.0.2.25", 30),
    ),
)


@st.composite
def policy(draw: st.DrawFn, index: int) -> SteeringPolicy:
    targets = []
    for _ in range(draw(st.integers(1, 4))):
        v6 = draw(st.booleans())
        host = draw(st.integers(1, 4))  # shared with other names: one change touches several
        targets.append(
            Target(
                cluster=f"c{draw(st.integers(0, 3))}",
                region=draw(st.sampled_from(REGIONS)),
                address=f"2001:db8::{host}" if v6 else f"192.0.2.{host}",
                port=443,
                weight=draw(st.integers(0, 3)),
                tier=draw(st.integers(0, 1)),
            )
        )
    latency = {g.name: {r: float(draw(st.integers(1, 300))) for r in REGIONS} for g in GROUPS[:2]}
    return SteeringPolicy(
        name=f"n{index}.gtm.example",
        zone="gtm.example",
        strategy=draw(st.sampled_from(STRATEGIES)),
        targets=tuple(targets),
        ttl=draw(st.sampled_from((5, 30))),
        max_answers=draw(st.integers(1, 2)),
        all_down=draw(st.sampled_from(("answerAll", "fallback", "servfail"))),
        fallback=("198.51.100.99",),
        latency=latency,
        sticky=draw(st.booleans()),
    )


@st.composite
def worlds(draw: st.DrawFn) -> tuple[GtmPlan, list[tuple[str, int, float]]]:
    policies = {p.name: p for p in (draw(policy(i)) for i in range(draw(st.integers(1, 3))))}
    plan = GtmPlan(policies, GROUPS, (ZONE,), ())
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(("flip", "detail", "tick")),
                st.integers(0, 15),
                st.sampled_from((0.0, 1.0, 7.0, 40.0)),
            ),
            min_size=1,
            max_size=6,
        )
    )
    return plan, steps


@contextmanager
def unshuffled() -> Iterator[None]:
    with mock.patch("dns.rdataset.random.shuffle", lambda items: None):
        yield


def keys_of(plan: GtmPlan) -> list[tuple[str, str, int]]:
    seen = {(t.cluster, t.address, t.port): None for p in plan.policies.values() for t in p.targets}
    return list(seen)


def full_table(decided: DecidedPlan, epoch: int) -> AnswerTable:
    return AnswerTable.build(
        decided.zones,
        decided.decisions.values(),
        decided.client_groups,
        decided.policies.values(),
        generation=epoch,
    )


def assert_same_answers(a: AnswerTable, b: AnswerTable) -> None:
    assert a.exact == b.exact
    assert a.names == b.names
    assert a.zones == b.zones
    assert (a.generation, a.udp_size, a.opt) == (b.generation, b.udp_size, b.opt)


@settings(max_examples=60, deadline=None)
@given(worlds())
def test_incremental_equals_a_full_build_after_any_health_changes(
    world: tuple[GtmPlan, list[tuple[str, int, float]]],
) -> None:
    plan, steps = world
    keys = keys_of(plan)
    healthy = set(keys)
    with unshuffled():
        served = decide(plan, HealthView(frozenset(healthy), frozenset(keys)), epoch=1, serial=1)
        run_steps(plan, steps, served, keys, healthy)


def run_steps(
    plan: GtmPlan,
    steps: list[tuple[str, int, float]],
    served: DecidedPlan,
    keys: list[tuple[str, str, int]],
    healthy: set[tuple[str, str, int]],
) -> None:
    detail: dict[tuple[str, str, int], str] = {}
    now = 1000.0
    for epoch, (kind, index, seconds) in enumerate(steps, start=2):
        key = keys[index % len(keys)]
        if kind == "flip":
            healthy ^= {key}
        elif kind == "detail":
            detail[key] = f"timeout {epoch}"
        now += seconds
        health = HealthView(frozenset(healthy), frozenset(keys), dict(detail))
        args = {"epoch": epoch, "previous": served.decisions, "serial": epoch, "now": now}
        incremental = decide(plan, health, reuse=served, **args)  # type: ignore[arg-type]
        full = decide(plan, health, **args)  # type: ignore[arg-type]
        assert incremental.decisions.keys() == full.decisions.keys()
        for k, d in full.decisions.items():
            got = incremental.decisions[k]
            answer = (d.addresses, d.servfail, d.depends_on_client, d.regions, d.all_down)
            assert (
                got.addresses,
                got.servfail,
                got.depends_on_client,
                got.regions,
                got.all_down,
            ) == answer
            assert got.reasons == d.reasons
        assert_same_answers(incremental.table, full_table(incremental, epoch))
        served = incremental


def test_a_change_to_one_name_leaves_the_others_answers_untouched() -> None:
    targets = {
        n: tuple(
            Target(f"{n}-{r}", r, f"192.0.2.{10 * i + j}", 443, tier=j)
            for j, r in enumerate(REGIONS)
        )
        for i, n in enumerate(("a", "b"))
    }
    policies = {
        f"{n}.gtm.example": SteeringPolicy(f"{n}.gtm.example", "gtm.example", "geo", ts, 30)
        for n, ts in targets.items()
    }
    plan = GtmPlan(policies, GROUPS, (ZONE,), ())
    keys = keys_of(plan)
    first = decide(plan, HealthView(frozenset(keys), frozenset(keys)), epoch=1, serial=1)
    down = (targets["a"][0].cluster, targets["a"][0].address, 443)
    health = HealthView(frozenset(keys) - {down}, frozenset(keys))
    second = decide(plan, health, epoch=2, previous=first.decisions, serial=2, reuse=first)
    assert_same_answers(second.table, full_table(second, 2))
    b_key = b"\x01b\x03gtm\x07example\x00"
    a_key = b"\x01a\x03gtm\x07example\x00"
    assert second.table.exact[b_key, 1] is first.table.exact[b_key, 1]
    assert second.table.exact[a_key, 1] is not first.table.exact[a_key, 1]
    assert all(second.decisions[k] is first.decisions[k] for k in first.decisions if k[0][0] == "b")
    # the SOA serial moved in every negative answer, kept or rebuilt
    assert second.table.names[b_key] != first.table.names[b_key]
    negative = second.table.names[b_key]
    assert isinstance(negative, WireAnswer)
    assert negative.body[-20:-16] == (2).to_bytes(4)


def test_what_changes_besides_health_is_built_in_full() -> None:
    ts = (Target("c", "eu-west", "192.0.2.1", 443), Target("d", "us-west", "192.0.2.2", 443))
    policy = SteeringPolicy("a.gtm.example", "gtm.example", "failover", ts, 30)
    plan = GtmPlan({policy.name: policy}, GROUPS, (ZONE,), ())
    health = HealthView(frozenset())
    first = decide(plan, health, epoch=1, serial=1)
    longer = replace(policy, ttl=60)
    changed = GtmPlan({policy.name: longer}, GROUPS, (ZONE,), ())
    second = decide(changed, health, epoch=2, previous=first.decisions, serial=2, reuse=first)
    assert_same_answers(second.table, full_table(second, 2))
    zone = replace(ZONE, records=ZONE.records[:1])
    third_plan = GtmPlan({policy.name: longer}, GROUPS, (zone,), ())
    third = decide(third_plan, health, epoch=3, previous=second.decisions, serial=3, reuse=second)
    assert_same_answers(third.table, full_table(third, 3))
    assert (b"\x04mail\x03gtm\x07example\x00", 15) not in third.table.exact


def test_a_pickled_table_leaves_its_build_state_behind() -> None:
    ts = (Target("c", "eu-west", "192.0.2.1", 443),)
    policy = SteeringPolicy("a.gtm.example", "gtm.example", "failover", ts, 30)
    plan = GtmPlan({policy.name: policy}, GROUPS, (ZONE,), ())
    table = decide(plan, HealthView(frozenset()), epoch=1, serial=1).table
    assert table.parts is not None
    copy = pickle.loads(pickle.dumps(table))
    assert copy.parts is None
    assert_same_answers(copy, table)


def test_a_placement_change_is_steered_again_with_health_unchanged() -> None:
    ts = (Target("c", "eu-west", "192.0.2.1", 443), Target("d", "us-west", "192.0.2.2", 443))
    policy = SteeringPolicy("a.gtm.example", "gtm.example", "geo", ts, 30)
    plan = GtmPlan({policy.name: policy}, GROUPS, (ZONE,), ())
    health = HealthView(frozenset())
    first = decide(plan, health, epoch=1, serial=1)
    assert first.decisions[policy.name, "g1"].addresses == ("192.0.2.1",)
    placed = {(policy.name, "g1"): Placed(regions=("us-west",))}
    args = {"epoch": 2, "previous": first.decisions, "serial": 2, "placed": placed}
    second = decide(plan, health, reuse=first, **args)  # type: ignore[arg-type]
    full = decide(plan, health, **args)  # type: ignore[arg-type]
    assert second.decisions[policy.name, "g1"].addresses == ("192.0.2.2",)
    assert dict(second.decisions) == dict(full.decisions)
    assert_same_answers(second.table, full_table(second, 2))
