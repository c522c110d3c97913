"""Steering strategies, all-down behaviour and reasons: inputs in, Decisions out."""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import replace

import pytest

from controlplane.gtm.steering import rotation_at, steer, steer_all
from controlplane.gtm.types import (
    DEFAULT_GROUP,
    ClientGroup,
    Decision,
    HealthView,
    Placed,
    SteeringPolicy,
    Target,
)

EU = Target("eu-1", "eu-west", "192.0.2.1", 443)
US = Target("us-1", "us-west", "192.0.2.2", 443)
AP = Target("ap-1", "ap-south", "192.0.2.3", 443)
EU6 = Target("eu-1", "eu-west", "2001:db8::1", 443)

G_EU = ClientGroup("eu", (ipaddress.ip_network("203.0.113.0/25"),), region="eu-west")
G_US = ClientGroup("us", (ipaddress.ip_network("203.0.113.128/25"),), region="us-west")
G_NONE = ClientGroup("elsewhere", ())

ALL_UP = HealthView(frozenset())


def key(t: Target) -> tuple[str, str, int]:
    return (t.cluster, t.address, t.port)


def down(*targets: Target, detail: str | None = None) -> HealthView:
    """Every target known; the given ones unhealthy."""
    everyone = (EU, US, AP, EU6)
    known = frozenset(key(t) for t in everyone)
    healthy = frozenset(key(t) for t in everyone if t not in targets)
    details = {key(t): detail for t in targets} if detail else {}
    return HealthView(healthy, known, details)


def policy(strategy: str = "failover", *targets: Target, **kw: object) -> SteeringPolicy:
    return SteeringPolicy(
        name="app.gtm.example",
        zone="gtm.example",
        strategy=strategy,  # type: ignore[arg-type]
        targets=targets or (EU, US, AP),
        ttl=10,
        **kw,  # type: ignore[arg-type]
    )


# --- failover ---------------------------------------------------------------------------------


def test_failover_answers_lowest_tier() -> None:
    p = policy("failover", replace(EU, tier=0), replace(US, tier=1), replace(AP, tier=2))
    d = steer(p, G_US, ALL_UP)
    assert d.addresses == (EU.address,)
    assert d.regions == ("eu-west",)
    assert not d.depends_on_client
    assert "tier 0 is healthy" in d.reasons[0]


def test_failover_skips_unhealthy_tier_and_says_why() -> None:
    p = policy("failover", replace(EU, tier=0), replace(US, tier=1), replace(AP, tier=2))
    health = HealthView(
        frozenset({key(US), key(AP)}),
        frozenset({key(EU), key(US), key(AP)}),
        {key(EU): "3 failed probes: connection refused"},
    )
    d = steer(p, G_EU, health)
    assert d.addresses == (US.address,)
    assert "failing over to tier 1" in d.reasons[0]
    assert "eu-west unhealthy (3 failed probes: connection refused)" in d.reasons


def test_failover_ties_within_tier_by_weight_then_policy_order() -> None:
    p = policy(
        "failover",
        replace(EU, weight=1),
        replace(US, weight=5),
        replace(AP, weight=5),
        max_answers=3,
    )
    assert steer(p, G_EU, ALL_UP).addresses == (US.address, AP.address, EU.address)
    p1 = replace(p, max_answers=1)
    assert steer(p1, G_EU, ALL_UP).addresses == (US.address,)


def test_failover_never_mixes_tiers_even_with_room() -> None:
    p = policy("failover", EU, replace(US, tier=1), max_answers=3)
    assert steer(p, G_EU, ALL_UP).addresses == (EU.address,)


# --- weighted ---------------------------------------------------------------------------------


def test_weighted_is_deterministic_per_group() -> None:
    p = policy("weighted", replace(EU, weight=3), replace(US, weight=1))
    first = steer(p, G_EU, ALL_UP, epoch=7)
    for _ in range(5):
        assert steer(p, G_EU, ALL_UP, epoch=7) == first
    assert first.depends_on_client
    assert "weighted: group eu drew" in first.reasons[0]


def test_weighted_sticky_keeps_the_answer_across_rebuilds_and_rotations() -> None:
    """Epoch counts rebuilds (any health or model change anywhere): it must not re-draw."""
    p = policy("weighted", EU, US, AP)
    groups = [ClientGroup(f"g{i}", ()) for i in range(100)]
    first = {g.name: steer(p, g, ALL_UP, epoch=1).addresses for g in groups}
    for epoch, rotation in ((2, 0), (50, 7), (1000, 123456)):
        later = {
            g.name: steer(p, g, ALL_UP, epoch=epoch, rotation=rotation).addresses for g in groups
        }
        assert later == first
    assert len(set(first.values())) == 3  # the groups still spread over the targets


def test_weighted_distribution_follows_weights() -> None:
    p = policy("weighted", replace(EU, weight=70), replace(US, weight=20), replace(AP, weight=10))
    counts: Counter[str] = Counter()
    n = 0
    for g in range(3000):
        counts[steer(p, ClientGroup(f"g{g}", ()), ALL_UP).addresses[0]] += 1
        n += 1
    assert counts[EU.address] / n == pytest.approx(0.70, abs=0.04)
    assert counts[US.address] / n == pytest.approx(0.20, abs=0.04)
    assert counts[AP.address] / n == pytest.approx(0.10, abs=0.03)


def test_weighted_only_moves_groups_of_the_target_that_went_down() -> None:
    p = policy("weighted", EU, US, AP)
    groups = [ClientGroup(f"g{i}", ()) for i in range(300)]
    before = {g.name: steer(p, g, ALL_UP, epoch=1).addresses[0] for g in groups}
    after = {g.name: steer(p, g, down(AP), epoch=1).addresses[0] for g in groups}
    for name, addr in before.items():
        if addr != AP.address:
            assert after[name] == addr
        else:
            assert after[name] != AP.address
    again = {g.name: steer(p, g, ALL_UP, epoch=1).addresses[0] for g in groups}
    assert again == before


def test_weighted_zero_weight_gets_no_traffic() -> None:
    p = policy("weighted", replace(EU, weight=100), replace(US, weight=0))
    for g in range(100):
        assert steer(p, ClientGroup(f"g{g}", ()), ALL_UP).addresses == (EU.address,)


def test_weighted_only_zero_weights_healthy_still_answers() -> None:
    p = policy("weighted", replace(EU, weight=100), replace(US, weight=0), replace(AP, weight=0))
    d = steer(p, G_EU, down(EU))
    assert d.addresses and d.addresses[0] in {US.address, AP.address}
    assert any("weight 0" in r for r in d.reasons)


def test_weighted_single_healthy_target_is_client_independent() -> None:
    p = policy("weighted", EU, US)
    d = steer(p, G_EU, down(US))
    assert d.addresses == (EU.address,)
    assert not d.depends_on_client


def test_weighted_max_answers_covers_all_healthy_identically() -> None:
    p = policy("weighted", EU, US, AP, max_answers=3)
    a = steer(p, G_EU, ALL_UP, epoch=3)
    b = steer(p, G_US, ALL_UP, epoch=9)
    assert a.addresses == b.addresses == (EU.address, US.address, AP.address)
    assert not a.depends_on_client


def test_weighted_dual_stack_within_max_answers_is_client_independent() -> None:
    p = policy("weighted", EU, EU6)
    d = steer(p, G_EU, ALL_UP)
    assert d.addresses == (EU.address, EU6.address)
    assert not d.depends_on_client


def test_weighted_not_sticky_is_the_same_for_every_group() -> None:
    p = policy("weighted", EU, US, AP, sticky=False)
    answers = {steer(p, ClientGroup(f"g{i}", ()), ALL_UP, rotation=4).addresses for i in range(50)}
    assert len(answers) == 1
    assert not steer(p, G_EU, ALL_UP, rotation=4).depends_on_client


def test_weighted_not_sticky_draws_again_per_rotation_not_per_epoch() -> None:
    p = policy(
        "weighted",
        replace(EU, weight=70),
        replace(US, weight=20),
        replace(AP, weight=10),
        sticky=False,
    )
    same = {steer(p, G_EU, ALL_UP, epoch=e, rotation=5).addresses for e in range(20)}
    assert len(same) == 1
    counts = Counter(steer(p, G_EU, ALL_UP, rotation=r).addresses[0] for r in range(3000))
    assert counts[EU.address] / 3000 == pytest.approx(0.70, abs=0.04)
    assert counts[AP.address] / 3000 == pytest.approx(0.10, abs=0.03)


# --- geo --------------------------------------------------------------------------------------


def test_geo_uses_the_groups_own_region() -> None:
    p = policy("geo")
    assert steer(p, G_EU, ALL_UP).addresses == (EU.address,)
    assert steer(p, G_US, ALL_UP).addresses == (US.address,)
    assert "the group's region" in steer(p, G_EU, ALL_UP).reasons[0]


def test_geo_policy_preferences_win_over_group_region() -> None:
    p = policy("geo", geo={"eu": ("ap-south", "eu-west")})
    d = steer(p, G_EU, ALL_UP)
    assert d.addresses == (AP.address,)
    assert "prefers ap-south, eu-west (policy)" in d.reasons[0]


def test_geo_next_preference_when_first_is_down() -> None:
    p = policy("geo", geo={"eu": ("eu-west", "us-west")})
    d = steer(p, G_EU, down(EU, detail="3 failed probes"))
    assert d.addresses == (US.address,)
    assert "eu-west has no healthy target" in d.reasons
    assert "eu-west unhealthy (3 failed probes)" in d.reasons


def test_geo_falls_back_to_nearest_by_latency() -> None:
    p = policy("geo", latency={"eu": {"us-west": 140.0, "ap-south": 90.0}})
    d = steer(p, G_EU, down(EU))
    assert d.addresses == (AP.address,)
    assert "nearest healthy region by latency is ap-south (90ms)" in d.reasons[-2]


def test_geo_falls_back_to_failover_order_without_data() -> None:
    p = policy("geo", replace(EU, tier=0), replace(US, tier=1), replace(AP, tier=1, weight=9))
    d = steer(p, G_NONE, ALL_UP)
    assert d.addresses == (EU.address,)
    assert "no region known for group elsewhere" in d.reasons[0]
    d = steer(p, G_EU, down(EU))
    assert d.addresses == (AP.address,)
    assert any("using failover order" in r for r in d.reasons)


# --- lowestLatency ----------------------------------------------------------------------------

LAT = {"eu": {"eu-west": 12.0, "us-west": 140.0, "ap-south": 210.0}, "us": {"us-west": 9.5}}


def test_lowest_latency_picks_lowest_and_explains() -> None:
    p = policy("lowestLatency", latency=LAT)
    d = steer(p, G_EU, ALL_UP)
    assert d.addresses == (EU.address,)
    assert d.reasons[0] == "group eu: latency eu-west 12ms < us-west 140ms < ap-south 210ms"
    assert d.depends_on_client


def test_lowest_latency_partial_data_says_what_is_missing() -> None:
    p = policy("lowestLatency", latency=LAT)
    d = steer(p, G_US, ALL_UP)
    assert d.addresses == (US.address,)
    assert "no latency data for eu-west, ap-south" in d.reasons


def test_lowest_latency_missing_data_falls_back_to_failover() -> None:
    p = policy("lowestLatency", replace(EU, tier=1), US, AP, latency=LAT)
    d = steer(p, G_NONE, ALL_UP)
    assert d.addresses == (US.address,)
    assert "no latency data for group elsewhere; using failover order" in d.reasons[0]


def test_lowest_latency_ties_break_by_region_name() -> None:
    p = policy("lowestLatency", latency={"eu": {"us-west": 50.0, "ap-south": 50.0}})
    assert steer(p, G_EU, ALL_UP).addresses == (AP.address,)


def test_lowest_latency_skips_unhealthy_region() -> None:
    p = policy("lowestLatency", latency=LAT)
    d = steer(p, G_EU, down(EU, detail="3 failed probes"))
    assert d.addresses == (US.address,)
    assert "eu-west unhealthy (3 failed probes)" in d.reasons


def _prev(region_target: Target, since: int, at: float = 0.0) -> Decision:
    return Decision(
        "app.gtm.example",
        "eu",
        (region_target.address,),
        regions=(region_target.region,),
        epoch=since,
        since_epoch=since,
        since=at,
    )


def test_previous_carries_since_while_the_first_region_stays() -> None:
    lat = {"eu": {"eu-west": 100.0, "us-west": 150.0}}
    p = policy("lowestLatency", EU, US, latency=lat)
    d = steer(p, G_EU, ALL_UP, epoch=5, previous=_prev(EU, 1, at=1000.0), now=1010.0)
    assert d.addresses == (EU.address,)
    assert (d.since_epoch, d.since) == (1, 1000.0)


def test_steering_itself_does_not_damp() -> None:
    """Hysteresis and minimum dwell are the placement engine's (tests/unit/test_placement_groups.py):
    on its own, steering answers the lowest latency at once, whatever the previous answer."""
    lat = {"eu": {"eu-west": 100.0, "us-west": 95.0}}
    p = policy("lowestLatency", EU, US, latency=lat)
    d = steer(p, G_EU, ALL_UP, epoch=5, previous=_prev(EU, 1, at=1000.0), now=1000.5)
    assert d.addresses == (US.address,)
    assert (d.since_epoch, d.since, d.dwell_until) == (5, 1000.5, None)


# --- within the placement decision (Placed) -----------------------------------------------------


def placed(*regions: str, **kw: object) -> dict[tuple[str, str], Placed]:
    return {("app.gtm.example", "eu"): Placed(regions=regions, **kw)}  # type: ignore[arg-type]


def test_lowest_latency_answers_the_placement_choice_for_the_group() -> None:
    """The group's region is chosen (and damped) in placement; steering answers it even when
    the typed matrix alone would pick another."""
    row = {"eu-west": 100.0, "us-west": 10.0}
    p = policy("lowestLatency", EU, US, AP, latency={"eu": row, DEFAULT_GROUP: row})
    allow = placed("eu-west", fallback=("us-west",), rule="hold.dwell", dwell_until=1030.0)
    out = steer_all([p], [G_EU], ALL_UP, now=1000.0, placed=allow)
    d = out[("app.gtm.example", "eu")]
    assert d.addresses == (EU.address,)
    assert d.dwell_until == 1030.0  # the runtime decides again when the placement's dwell ends
    assert d.reasons[0] == "placement (hold.dwell): eu-west (then us-west)"
    assert out[("app.gtm.example", DEFAULT_GROUP)].addresses == (US.address,)  # no Placed: its own


def test_a_placed_region_without_health_falls_to_the_next_serving_region() -> None:
    p = policy("lowestLatency", EU, US, AP, latency={"eu": {"ap-south": 1.0}})
    d = steer(p, G_EU, down(EU), placed=placed("eu-west", fallback=("us-west",))[key_eu()])
    assert d.addresses == (US.address,)
    assert d.dwell_until is None
    assert "eu-west has no healthy target; answering us-west" in " ".join(d.reasons)


def test_no_healthy_target_in_the_placed_regions_lets_health_decide() -> None:
    p = policy("failover", EU, US, AP)
    d = steer(p, G_EU, down(EU), placed=placed("eu-west")[key_eu()])
    assert d.addresses == (US.address,)
    assert "no healthy target there; health alone decides" in d.reasons[0]


def test_other_strategies_pick_within_the_placed_regions() -> None:
    allow = placed("us-west", "ap-south")[key_eu()]
    assert steer(policy("failover"), G_EU, ALL_UP, placed=allow).addresses == (US.address,)
    rr = policy("roundRobin", max_answers=3)
    assert steer(rr, G_EU, ALL_UP, placed=allow).addresses == (US.address, AP.address)
    geo = policy("geo", geo={"eu": ("eu-west", "ap-south")})
    assert steer(geo, G_EU, ALL_UP, placed=allow).addresses == (AP.address,)
    weighted = policy("weighted", max_answers=3)
    assert set(steer(weighted, G_EU, ALL_UP, placed=allow).addresses) == {US.address, AP.address}


def key_eu() -> tuple[str, str]:
    return ("app.gtm.example", "eu")


def test_previous_for_another_group_is_ignored() -> None:
    lat = {"us": {"eu-west": 100.0, "us-west": 99.0}}
    p = policy("lowestLatency", EU, US, latency=lat)
    assert steer(p, G_US, ALL_UP, previous=_prev(EU, 0)).addresses == (US.address,)


# --- roundRobin -------------------------------------------------------------------------------


def test_round_robin_rotates_per_rotation() -> None:
    p = policy("roundRobin", max_answers=2)
    assert steer(p, G_EU, ALL_UP, rotation=0).addresses == (EU.address, US.address)
    assert steer(p, G_EU, ALL_UP, rotation=1).addresses == (US.address, AP.address)
    assert steer(p, G_EU, ALL_UP, rotation=2).addresses == (AP.address, EU.address)
    assert steer(p, G_EU, ALL_UP, rotation=3).addresses == (EU.address, US.address)
    assert not steer(p, G_EU, ALL_UP).depends_on_client


def test_round_robin_ignores_rebuilds_and_moves_with_time() -> None:
    p = policy("roundRobin")  # ttl 10 s: one rotation every 10 s
    assert {steer(p, G_EU, ALL_UP, epoch=e).addresses for e in range(5)} == {(EU.address,)}
    at = {t: steer_all([p], [G_EU], ALL_UP, now=t)[(p.name, "eu")].addresses for t in (0, 9.9, 10)}
    assert at == {0: (EU.address,), 9.9: (EU.address,), 10: (US.address,)}
    assert rotation_at(p, 25.0) == 2
    assert rotation_at(policy("failover", EU, US), 25.0) == 0  # only rotating policies see time
    assert rotation_at(replace(p, ttl=0), 2.5) == 2  # at least one second


def test_round_robin_only_healthy() -> None:
    p = policy("roundRobin")
    seen = {steer(p, G_EU, down(US), rotation=r).addresses[0] for r in range(6)}
    assert seen == {EU.address, AP.address}


# --- max_answers and address families ---------------------------------------------------------


def test_max_answers_counts_each_address_family() -> None:
    p = policy("failover", EU, EU6, US, max_answers=1)
    assert steer(p, G_EU, ALL_UP).addresses == (EU.address, EU6.address)


def test_duplicate_addresses_are_answered_once() -> None:
    twin = Target("eu-2", "eu-west", EU.address, 8443)
    p = policy("failover", EU, twin, max_answers=4)
    assert steer(p, G_EU, ALL_UP).addresses == (EU.address,)


# --- all down ---------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["failover", "weighted", "geo", "lowestLatency", "roundRobin"])
def test_all_down_answer_all(strategy: str) -> None:
    p = policy(strategy, all_down="answerAll")
    d = steer(p, G_EU, down(EU, US, AP, detail="timeout"))
    assert d.all_down and not d.servfail and not d.depends_on_client
    assert set(d.addresses) == {EU.address, US.address, AP.address}
    assert "all down" in d.reasons[0]
    assert "us-west unhealthy (timeout)" in d.reasons


def test_all_down_fallback() -> None:
    p = policy("geo", all_down="fallback", fallback=("198.51.100.1", "198.51.100.1"))
    d = steer(p, G_EU, down(EU, US, AP))
    assert d.addresses == ("198.51.100.1",)
    assert "fallback" in d.reasons[0]


def test_all_down_fallback_without_addresses_answers_all() -> None:
    p = policy("geo", all_down="fallback")
    d = steer(p, G_EU, down(EU, US, AP))
    assert len(d.addresses) == 3
    assert "no fallback addresses are configured" in d.reasons[0]


def test_all_down_servfail() -> None:
    p = policy("lowestLatency", all_down="servfail")
    d = steer(p, G_EU, down(EU, US, AP))
    assert d.servfail and d.addresses == ()
    assert "SERVFAIL" in d.reasons[0]


def test_no_targets_is_servfail_unless_fallback() -> None:
    p = SteeringPolicy("x.gtm.example", "gtm.example", "failover", (), 10)
    assert steer(p, G_EU, ALL_UP).servfail
    p = replace(p, all_down="fallback", fallback=("198.51.100.9",))
    assert steer(p, G_EU, ALL_UP).addresses == ("198.51.100.9",)


def test_unknown_targets_count_as_healthy() -> None:
    health = HealthView(frozenset(), frozenset({key(EU)}))
    p = policy("failover")
    assert steer(p, G_EU, health).addresses == (US.address,)


# --- steer_all --------------------------------------------------------------------------------


def test_steer_all_covers_every_group_and_the_default() -> None:
    ps = [policy("geo"), replace(policy("failover"), name="b.gtm.example")]
    out = steer_all(ps, [G_EU, G_US], ALL_UP, epoch=0)
    assert set(out) == {
        (n, g) for n in ("app.gtm.example", "b.gtm.example") for g in ("eu", "us", DEFAULT_GROUP)
    }
    assert out[("app.gtm.example", "eu")].addresses == (EU.address,)
    assert out[("app.gtm.example", "eu")].depends_on_client
    assert not out[("b.gtm.example", "us")].depends_on_client


def test_steer_all_marks_uniform_answers_client_independent() -> None:
    p = policy("geo", geo={"eu": ("us-west",), "us": ("us-west",), DEFAULT_GROUP: ("us-west",)})
    out = steer_all([p], [G_EU, G_US], ALL_UP)
    assert {d.addresses for d in out.values()} == {(US.address,)}
    assert not any(d.depends_on_client for d in out.values())
