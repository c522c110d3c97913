"""Properties every strategy keeps, over generated policies, groups and health."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.gtm.steering import steer, steer_all
from controlplane.gtm.stickiness import rank
from controlplane.gtm.types import ClientGroup, HealthView, Placed, SteeringPolicy, Target

REGIONS = ("eu-west", "us-west", "ap-south", "sa-east")
STRATEGIES = ("failover", "weighted", "geo", "lowestLatency", "roundRobin")


@st.composite
def targets(draw: st.DrawFn) -> tuple[Target, ...]:
    n = draw(st.integers(0, 6))
    out = []
    for i in range(n):
        v6 = draw(st.booleans())
        host = draw(st.integers(1, 4))  # small range: duplicate addresses happen
        address = f"2001:db8::{host}" if v6 else f"192.0.2.{host}"
        out.append(
            Target(
                cluster=f"c{i}",
                region=draw(st.sampled_from(REGIONS)),
                address=address,
                port=443,
                weight=draw(st.integers(0, 5)),
                tier=draw(st.integers(0, 2)),
            )
        )
    return tuple(out)


@st.composite
def cases(draw: st.DrawFn) -> tuple[SteeringPolicy, ClientGroup, HealthView, int]:
    ts = draw(targets())
    groups = ("g1", "g2", "default")
    latency = {
        g: draw(
            st.dictionaries(
                st.sampled_from(REGIONS), st.floats(0, 500, allow_nan=False), max_size=4
            )
        )
        for g in groups
    }
    geo = {g: tuple(draw(st.lists(st.sampled_from(REGIONS), max_size=3))) for g in groups}
    policy = SteeringPolicy(
        name="n.gtm.example",
        zone="gtm.example",
        strategy=draw(st.sampled_from(STRATEGIES)),
        targets=ts,
        ttl=10,
        max_answers=draw(st.integers(1, 4)),
        all_down=draw(st.sampled_from(("answerAll", "fallback", "servfail"))),
        fallback=draw(st.sampled_from(((), ("198.51.100.1",)))),
        latency=latency,
        geo=geo,
        sticky=draw(st.booleans()),
    )
    group = ClientGroup(
        draw(st.sampled_from(groups)),
        (ipaddress.ip_network("203.0.113.0/24"),),
        region=draw(st.none() | st.sampled_from(REGIONS)),
    )
    keys = [(t.cluster, t.address, t.port) for t in ts]
    healthy = frozenset(k for k in keys if draw(st.booleans()))
    known = frozenset(k for k in keys if k not in healthy or draw(st.booleans()))
    return policy, group, HealthView(healthy, known), draw(st.integers(0, 1000))


@settings(max_examples=200, deadline=None)
@given(cases())
def test_answers_are_healthy_bounded_and_never_empty(
    case: tuple[SteeringPolicy, ClientGroup, HealthView, int],
) -> None:
    policy, group, health, epoch = case
    d = steer(policy, group, health, epoch=epoch)
    assert d.name == policy.name and d.group == group.name
    assert d.reasons, "every decision explains itself"
    if d.servfail:
        assert d.addresses == ()
        return
    assert d.addresses, "a name that exists never gets an empty answer"
    assert len(set(d.addresses)) == len(d.addresses)
    healthy_addrs = {t.address for t in policy.targets if health.is_healthy(t)}
    if healthy_addrs:
        assert not d.all_down
        assert set(d.addresses) <= healthy_addrs
        v4 = [a for a in d.addresses if ":" not in a]
        v6 = [a for a in d.addresses if ":" in a]
        assert len(v4) <= policy.max_answers and len(v6) <= policy.max_answers
    else:
        assert d.all_down and not d.depends_on_client


@settings(max_examples=150, deadline=None)
@given(cases())
def test_deterministic(case: tuple[SteeringPolicy, ClientGroup, HealthView, int]) -> None:
    policy, group, health, epoch = case
    assert steer(policy, group, health, epoch=epoch) == steer(policy, group, health, epoch=epoch)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_client_independent_answers_are_the_same_for_every_group(
    case: tuple[SteeringPolicy, ClientGroup, HealthView, int],
) -> None:
    policy, group, health, epoch = case
    groups = [
        ClientGroup("g1", (), region="eu-west"),
        ClientGroup("g2", (), region=None),
        group,
    ]
    out = steer_all([policy], groups, health, epoch)
    independent = [d for d in out.values() if not d.depends_on_client]
    if independent:
        assert len({(d.addresses, d.servfail) for d in out.values()}) == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 20), min_size=1, max_size=6),
    st.integers(0, 5),
    st.text(max_size=8),
)
def test_rendezvous_removal_moves_only_the_removed(
    weights: list[int], removed: int, key: str
) -> None:
    cands = [(f"c{i}", float(w), i) for i, w in enumerate(weights)]
    before = rank(key, cands)
    gone = removed % len(cands)
    after = rank(key, [c for c in cands if c[2] != gone])
    assert after == [v for v in before if v != gone]


@settings(max_examples=200, deadline=None)
@given(cases(), st.lists(st.sampled_from(REGIONS), max_size=3, unique=True))
def test_answers_stay_within_the_placed_regions_while_one_is_healthy(
    case: tuple[SteeringPolicy, ClientGroup, HealthView, int], regions: list[str]
) -> None:
    """What the placement Decision allows bounds DNS: only when none of its regions has a
    healthy target does health alone decide (the Decision follows health a moment later)."""
    policy, group, health, epoch = case
    allow = Placed(regions=tuple(regions[:1]), fallback=tuple(regions[1:]))
    d = steer(policy, group, health, epoch=epoch, placed=allow)
    inside = [t for t in policy.targets if t.region in regions and health.is_healthy(t)]
    if inside:
        assert set(d.regions) <= set(regions), (d, regions)
