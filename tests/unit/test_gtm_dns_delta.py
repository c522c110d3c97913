"""Table deltas: what an incremental build changed, applied by a DNS worker to the table it holds,
gives the new table's answers; anything a delta cannot carry ships the whole table."""

from __future__ import annotations

import ipaddress
import pickle

import pytest

from controlplane.gtm.dns.delta import apply_delta, table_delta
from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.zone import Zone
from controlplane.gtm.plan import DecidedPlan, GtmPlan, decide
from controlplane.gtm.types import ClientGroup, HealthView, SteeringPolicy, Target

GROUPS = tuple(
    ClientGroup(f"g{i}", (ipaddress.ip_network(f"10.0.{i}.0/24"),), region=r)
    for i, r in enumerate(("eu-west", "us-west"))
)
ZONE = Zone("gtm.example", ("ns1.gtm.example",), glue={"ns1.gtm.example": ("192.0.2.53",)})
TARGETS = {
    n: (
        Target(f"{n}-eu", "eu-west", f"192.0.2.{i * 10 + 1}", 443),
        Target(f"{n}-us", "us-west", f"192.0.2.{i * 10 + 2}", 443),
    )
    for i, n in enumerate("abcdef")
}
POLICIES = {
    f"{n}.gtm.example": SteeringPolicy(f"{n}.gtm.example", "gtm.example", "geo", ts, 30)
    for n, ts in TARGETS.items()
}
KEYS = frozenset((t.cluster, t.address, t.port) for ts in TARGETS.values() for t in ts)
PLAN = GtmPlan(POLICIES, GROUPS, (ZONE,), ())


def answers(table: AnswerTable) -> tuple[object, ...]:
    return table.exact, table.names, table.zones, table.generation, table.udp_size


def first() -> DecidedPlan:
    return decide(PLAN, HealthView(KEYS, KEYS), epoch=1, serial=1)


def test_a_delta_applied_to_its_base_gives_the_new_table() -> None:
    one = first()
    down = HealthView(KEYS - {("a-eu", "192.0.2.1", 443)}, KEYS)
    two = decide(PLAN, down, epoch=2, previous=one.decisions, serial=2, reuse=one)
    delta = table_delta(one.table, two.table)
    assert delta is not None
    # the name that moved, the negative answers whose SOA serial moved; not b..f's A answers
    assert (b"\x01a\x03gtm\x07example\x00", 1) in delta.exact
    assert (b"\x01b\x03gtm\x07example\x00", 1) not in delta.exact
    held = pickle.loads(pickle.dumps(one.table))  # what a worker holds
    applied = apply_delta(held, pickle.loads(pickle.dumps(delta)))
    assert answers(applied) == answers(two.table)


def test_a_delta_for_another_base_is_refused() -> None:
    one = first()
    down = HealthView(KEYS - {("a-eu", "192.0.2.1", 443)}, KEYS)
    two = decide(PLAN, down, epoch=2, previous=one.decisions, serial=2, reuse=one)
    up = HealthView(KEYS, KEYS)
    three = decide(PLAN, up, epoch=3, previous=two.decisions, serial=3, reuse=two)
    delta = table_delta(two.table, three.table)
    assert delta is not None
    with pytest.raises(ValueError, match="generation 2 applied to generation 1"):
        apply_delta(one.table, delta)


def test_a_full_build_ships_whole() -> None:
    one = first()
    rebuilt = decide(PLAN, HealthView(KEYS, KEYS), epoch=2, serial=2)  # no reuse: all new slots
    assert table_delta(one.table, rebuilt.table) is None
    other = GtmPlan(POLICIES, GROUPS[:1], (ZONE,), ())  # other client groups
    regrouped = decide(other, HealthView(KEYS, KEYS), epoch=3, serial=3, reuse=one)
    assert table_delta(one.table, regrouped.table) is None
