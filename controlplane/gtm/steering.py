"""Steering: (policy, client group, health) -> Decision. Pure: no I/O, no clocks, no randomness.

Invariants every strategy keeps:

* only healthy targets are answered, unless none is healthy; then ``policy.all_down`` decides
  (``answerAll``: every target; ``fallback``: ``policy.fallback``; ``servfail``);
* a Decision that is not ``servfail`` always has at least one address;
* at most ``max_answers`` IPv4 and at most ``max_answers`` IPv6 addresses (A and AAAA are
  separate RRsets), without duplicates, best first;
* the same inputs give the same Decision (weighted choice hashes (name, group); non-sticky
  weighted and roundRobin also take ``rotation``, a time slot the caller computes with
  ``rotation_at(policy, now)``);
* ``epoch`` counts table rebuilds; it only dates decisions (``since_epoch``) and never changes
  which target is picked; ``now`` (seconds, from the caller) dates them too (``since``);
* ``depends_on_client`` is False only when every client group would get the same answer;
* with a ``Placed`` for (name, group) -- what the service's placement Decision allows this group
  (``controlplane.placement.groups``) -- only targets in its regions are answered, while any of
  them is healthy; otherwise health alone decides. Steering damps nothing itself: hysteresis and
  minimum dwell are the placement engine's. A Placed held by a dwell carries ``dwell_until``
  into the Decision, so the caller decides again then (``plan.next_dwell_expiry``).

Failover, geo and lowestLatency answer within one tier / one region: resolvers rotate RRsets, so
an address in the answer gets traffic even when it is listed last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from controlplane.gtm.stickiness import rank
from controlplane.gtm.types import (
    DEFAULT_GROUP,
    ClientGroup,
    Decision,
    HealthView,
    Placed,
    SteeringPolicy,
    Target,
)

__all__ = ["rotates", "rotation_at", "rotation_period", "steer", "steer_all", "target_label"]


@dataclass(frozen=True, slots=True)
class StrategyInput:
    """What every strategy decides from."""

    policy: SteeringPolicy
    group: ClientGroup
    healthy: tuple[Target, ...]  # non-empty, in policy order; within ``placed`` when given
    rotation: int  # the policy's time slot (``rotation_at``)
    placed: Placed | None = None  # the placement Decision's regions for this group, if any


@dataclass(frozen=True, slots=True)
class _Pick:
    targets: tuple[Target, ...]  # ranked, best first; already restricted to the chosen tier/region
    reasons: tuple[str, ...]
    depends_on_client: bool


def steer(
    policy: SteeringPolicy,
    group: ClientGroup,
    health: HealthView,
    *,
    epoch: int = 0,
    previous: Decision | None = None,
    rotation: int = 0,
    now: float = 0.0,
    placed: Placed | None = None,
) -> Decision:
    """Decide the answers for ``policy.name`` as seen by clients of ``group``.

    ``rotation`` is the policy's current time slot (``rotation_at(policy, now)``): roundRobin
    starts at a different target in every slot, non-sticky weighted draws again in every slot.

    ``previous`` is the Decision this (name, group) got last time: it carries ``since_epoch``
    and ``since`` (``now``, seconds) forward while the first answered region stays.
    ``placed``: the regions the service's placement Decision allows this group.
    """
    healthy, down = _partition(policy, health)
    return _decide(policy, group, healthy, down, epoch, previous, rotation, now, placed)


def rotation_period(policy: SteeringPolicy) -> int:
    """Seconds between rotations: the policy's TTL (a resolver keeps an answer that long anyway)."""
    return max(1, policy.ttl)


def rotates(policy: SteeringPolicy) -> bool:
    """Whether the policy's answers change with ``rotation`` (with unchanged health)."""
    return policy.strategy == "roundRobin" or (policy.strategy == "weighted" and not policy.sticky)


def rotation_at(policy: SteeringPolicy, now: float) -> int:
    """The policy's time slot at ``now`` (seconds since the epoch); 0 for policies that do not
    rotate, so their decisions do not depend on the time at all."""
    return int(now // rotation_period(policy)) if rotates(policy) else 0


def _partition(
    policy: SteeringPolicy, health: HealthView
) -> tuple[tuple[Target, ...], tuple[str, ...]]:
    healthy = tuple(t for t in policy.targets if health.is_healthy(t))
    down = tuple(
        _down_reason(policy, t, health) for t in policy.targets if not health.is_healthy(t)
    )
    return healthy, down


def _decide(
    policy: SteeringPolicy,
    group: ClientGroup,
    healthy: tuple[Target, ...],
    down: tuple[str, ...],
    epoch: int,
    previous: Decision | None,
    rotation: int,
    now: float,
    placed: Placed | None = None,
) -> Decision:
    if previous is not None and (previous.name != policy.name or previous.group != group.name):
        previous = None
    if not healthy:
        return _all_down(policy, group, down, epoch, now)
    pool, placing, held = _within_placement(policy, healthy, placed)
    pick = _STRATEGIES[policy.strategy](
        StrategyInput(policy, group, pool, rotation, placed if held is not None else None)
    )
    targets = _cap(pick.targets, policy.max_answers)
    regions = tuple(dict.fromkeys(t.region for t in targets))
    addresses = tuple(dict.fromkeys(t.address for t in targets))
    single = len({t.address for t in healthy}) == 1
    since_epoch, since = epoch, now
    if previous is not None and not previous.all_down and previous.regions[:1] == regions[:1]:
        since_epoch, since = previous.since_epoch, previous.since
    dwell_until = None
    if held is not None and placed is not None and regions[:1] == placed.regions[:1]:
        dwell_until = placed.dwell_until
    return Decision(
        name=policy.name,
        group=group.name,
        addresses=addresses,
        depends_on_client=pick.depends_on_client and not single,
        reasons=placing + pick.reasons + down,
        regions=regions,
        epoch=epoch,
        since_epoch=since_epoch,
        since=since,
        dwell_until=dwell_until,
    )


def _within_placement(
    policy: SteeringPolicy, healthy: tuple[Target, ...], placed: Placed | None
) -> tuple[tuple[Target, ...], tuple[str, ...], Placed | None]:
    """(the healthy targets steering may pick from, reasons, the Placed in force or None)."""
    if placed is None:
        return healthy, (), None
    allowed = set(placed.regions) | set(placed.fallback)
    inside = tuple(t for t in healthy if t.region in allowed)
    named = ", ".join(placed.regions) or "no region"
    if not inside:
        why = (
            f"placement ({placed.rule}) serves {named}: no healthy target there;"
            " health alone decides until the placement decision follows"
        )
        return healthy, (why,), None
    head = f"placement ({placed.rule}): {named}"
    if placed.fallback:
        head += f" (then {', '.join(placed.fallback)})"
    return inside, (head, *placed.reasons), placed


def steer_all(
    policies: Iterable[SteeringPolicy],
    groups: Iterable[ClientGroup],
    health: HealthView,
    epoch: int = 0,
    previous: Mapping[tuple[str, str], Decision] | None = None,
    now: float = 0.0,
    placed: Mapping[tuple[str, str], Placed] | None = None,
) -> dict[tuple[str, str], Decision]:
    """One Decision per (policy name, group name), always including the default group.

    ``now`` (seconds) picks each rotating policy's slot (``rotation_at``) and dates the
    decisions. ``placed`` (name, group) -> what the placement Decision allows (see ``steer``).

    When every group of a policy gets the same answer, all its Decisions are marked
    ``depends_on_client=False`` (ECS scope 0), whatever the strategy.
    """
    group_list = list(groups)
    if all(g.name != DEFAULT_GROUP for g in group_list):
        group_list.append(ClientGroup(DEFAULT_GROUP, ()))
    prev = previous or {}
    allowed = placed or {}
    out: dict[tuple[str, str], Decision] = {}
    for policy in policies:
        healthy, down = _partition(policy, health)
        rotation = rotation_at(policy, now)
        decisions = [
            _decide(
                policy,
                g,
                healthy,
                down,
                epoch,
                prev.get((policy.name, g.name)),
                rotation,
                now,
                allowed.get((policy.name, g.name)),
            )
            for g in group_list
        ]
        answers = {(d.addresses, d.servfail) for d in decisions}
        uniform = len(answers) == 1
        for d in decisions:
            if uniform and d.depends_on_client:
                d = replace(d, depends_on_client=False)
            out[(policy.name, d.group)] = d
    return out


def target_label(policy: SteeringPolicy, target: Target) -> str:
    """The region when it names the target unambiguously, else region/cluster."""
    same_region = sum(1 for t in policy.targets if t.region == target.region)
    return target.region if same_region == 1 else f"{target.region}/{target.cluster}"


# --- strategies -------------------------------------------------------------------------------


def _failover(s: StrategyInput) -> _Pick:
    return _failover_pick(s.policy, s.healthy, "failover")


def _failover_pick(policy: SteeringPolicy, healthy: Sequence[Target], what: str) -> _Pick:
    tier = min(t.tier for t in healthy)
    best_tier = min(t.tier for t in policy.targets)
    chosen = _ordered(policy, [t for t in healthy if t.tier == tier])
    names = ", ".join(target_label(policy, t) for t in chosen)
    if tier == best_tier:
        reason = f"{what}: tier {tier} is healthy ({names})"
    else:
        skipped = sorted({t.tier for t in policy.targets if t.tier < tier})
        tiers = ", ".join(str(s) for s in skipped)
        reason = f"{what}: no healthy target in tier {tiers}; failing over to tier {tier} ({names})"
    return _Pick(tuple(chosen), (reason,), depends_on_client=False)


def _weighted(s: StrategyInput) -> _Pick:
    policy, group, healthy, rotation = s.policy, s.group, s.healthy, s.rotation
    addresses = {t.address for t in healthy}
    v6 = sum(1 for a in addresses if ":" in a)
    if max(v6, len(addresses) - v6) <= max(1, policy.max_answers):
        chosen = _ordered(policy, healthy)
        names = ", ".join(target_label(policy, t) for t in chosen)
        return _Pick(tuple(chosen), (f"weighted: answering every healthy target ({names})",), False)
    positive = [t for t in healthy if t.weight > 0]
    reasons: list[str] = []
    if not positive:
        positive = list(healthy)
        reasons.append("weighted: every healthy target has weight 0; weighing them equally")
    # sticky: a group keeps its draw until its target goes down or the weights change;
    # not sticky: one draw for every group, drawn again each rotation period.
    key = f"{policy.name}|{group.name}" if policy.sticky else f"{policy.name}|*|{rotation}"
    weights = [float(t.weight) if t.weight > 0 else 1.0 for t in positive]
    ranked = rank(key, [(_target_id(t), w, t) for t, w in zip(positive, weights, strict=True)])
    total = sum(weights)
    first = ranked[0]
    share = (float(first.weight) if first.weight > 0 else 1.0) / total
    who = f"group {group.name}" if policy.sticky else f"every group, rotation {rotation},"
    reasons.append(
        f"weighted: {who} drew {target_label(policy, first)} "
        f"(weight {first.weight}, {share:.0%} of healthy weight)"
    )
    return _Pick(tuple(ranked), tuple(reasons), depends_on_client=policy.sticky)


def _geo(s: StrategyInput) -> _Pick:
    policy, group, healthy = s.policy, s.group, s.healthy
    prefs = tuple(policy.geo.get(group.name, ()))
    source = "policy"
    if not prefs and group.region:
        prefs, source = (group.region,), "the group's region"
    if not prefs:
        return _nearest(policy, group, healthy, f"geo: no region known for group {group.name}")
    reasons = [f"geo: group {group.name} prefers {', '.join(prefs)} ({source})"]
    for region in prefs:
        in_region = [t for t in healthy if t.region == region]
        if in_region:
            reasons.append(f"answering {region}")
            return _Pick(tuple(_ordered(policy, in_region)), tuple(reasons), True)
        configured = any(t.region == region for t in policy.targets)
        reasons.append(
            f"{region} has no healthy target" if configured else f"{region} has no target"
        )
    fallback = _nearest(policy, group, healthy, "geo: no preferred region can answer")
    return _Pick(fallback.targets, tuple(reasons) + fallback.reasons, True)


def _nearest(
    policy: SteeringPolicy, group: ClientGroup, healthy: Sequence[Target], why: str
) -> _Pick:
    """Lowest latency if the policy measured this group, else failover order."""
    row = policy.latency.get(group.name, {})
    measured = {t.region: row[t.region] for t in healthy if t.region in row}
    if measured:
        best = min(measured, key=lambda r: (measured[r], r))
        chosen = _ordered(policy, [t for t in healthy if t.region == best])
        reason = f"{why}; nearest healthy region by latency is {best} ({_ms(measured[best])})"
        return _Pick(tuple(chosen), (reason,), True)
    pick = _failover_pick(policy, healthy, "failover order")
    return _Pick(pick.targets, (f"{why}; using failover order", *pick.reasons), True)


def _lowest_latency(s: StrategyInput) -> _Pick:
    policy, group, healthy = s.policy, s.group, s.healthy
    if s.placed is not None:
        return _placed_order(policy, healthy, s.placed)
    row = policy.latency.get(group.name, {})
    regions = list(dict.fromkeys(t.region for t in _ordered(policy, healthy)))
    measured = {r: float(row[r]) for r in regions if r in row}
    if not measured:
        pick = _failover_pick(policy, healthy, "failover order")
        why = f"lowestLatency: no latency data for group {group.name}; using failover order"
        return _Pick(pick.targets, (why, *pick.reasons), True)
    ordered = sorted(measured, key=lambda r: (measured[r], r))
    best = ordered[0]
    chain = " < ".join(f"{r} {_ms(measured[r])}" for r in ordered)
    reasons = [f"group {group.name}: latency {chain}"]
    missing = [r for r in regions if r not in measured]
    if missing:
        reasons.append(f"no latency data for {', '.join(missing)}")
    targets = _ordered(policy, [t for t in healthy if t.region == best])
    return _Pick(tuple(targets), tuple(reasons), True)


def _placed_order(policy: SteeringPolicy, healthy: Sequence[Target], placed: Placed) -> _Pick:
    """The placement's region for this group (damped there), else the next serving one."""
    for position, region in enumerate((*placed.regions, *placed.fallback)):
        here = [t for t in healthy if t.region == region]
        if not here:
            continue
        if position < len(placed.regions):
            why = f"lowestLatency: answering {region}, the placement's choice for this group"
        else:
            why = (
                f"lowestLatency: {', '.join(placed.regions)} has no healthy target;"
                f" answering {region}, the next serving region for this group"
            )
        return _Pick(tuple(_ordered(policy, here)), (why,), True)
    raise AssertionError("placed pool without a placed region")  # _within_placement ensures


def _round_robin(s: StrategyInput) -> _Pick:
    policy, healthy, rotation = s.policy, s.healthy, s.rotation
    unique = list({t.address: t for t in reversed(healthy)}.values())[::-1]
    start = rotation % len(unique)
    rotated = unique[start:] + unique[:start]
    reason = (
        f"roundRobin: rotation {rotation} (every {rotation_period(policy)}s) starts at {target_label(policy, rotated[0])} "
        f"({start + 1} of {len(unique)} healthy)"
    )
    return _Pick(tuple(rotated), (reason,), depends_on_client=False)


_STRATEGIES: dict[str, Callable[[StrategyInput], _Pick]] = {
    "failover": _failover,
    "weighted": _weighted,
    "geo": _geo,
    "lowestLatency": _lowest_latency,
    "roundRobin": _round_robin,
}


# --- helpers ----------------------------------------------------------------------------------


def _all_down(
    policy: SteeringPolicy, group: ClientGroup, down: tuple[str, ...], epoch: int, now: float
) -> Decision:
    def make(addresses: tuple[str, ...], why: str, regions: tuple[str, ...] = ()) -> Decision:
        return Decision(
            name=policy.name,
            group=group.name,
            addresses=addresses,
            servfail=not addresses,
            depends_on_client=False,
            reasons=(why, *down),
            regions=regions,
            all_down=True,
            epoch=epoch,
            since=now,
        )

    fallback = tuple(dict.fromkeys(policy.fallback))
    if not policy.targets:
        if policy.all_down == "fallback" and fallback:
            return make(fallback, "no targets configured: answering the fallback addresses")
        return make((), "no targets configured: SERVFAIL")
    count = len(policy.targets)
    none = f"all down: none of {count} target(s) is healthy"
    if policy.all_down == "servfail":
        return make((), f"{none}; SERVFAIL (allDown: servfail)")
    if policy.all_down == "fallback" and fallback:
        return make(fallback, f"{none}; answering the fallback addresses")
    why = f"{none}; answering all of them"
    if policy.all_down == "fallback":
        why += " (allDown: fallback, but no fallback addresses are configured)"
    targets = _ordered(policy, policy.targets)
    addresses = tuple(dict.fromkeys(t.address for t in targets))
    regions = tuple(dict.fromkeys(t.region for t in targets))
    return make(addresses, why, regions)


def _down_reason(policy: SteeringPolicy, target: Target, health: HealthView) -> str:
    key = (target.cluster, target.address, target.port)
    detail = health.detail.get(key)
    label = target_label(policy, target)
    return f"{label} unhealthy ({detail})" if detail else f"{label} unhealthy"


def _ordered(policy: SteeringPolicy, targets: Iterable[Target]) -> list[Target]:
    """Tier first, then heavier weight, then the policy's own order.

    Every caller passes targets in policy order (a filtered ``policy.targets``), so the stable
    sort keeps that order for ties without looking it up.
    """
    return sorted(targets, key=lambda t: (t.tier, -t.weight))


def _cap(targets: Sequence[Target], n: int) -> tuple[Target, ...]:
    """At most ``n`` distinct IPv4 and ``n`` distinct IPv6 addresses, keeping the order."""
    n = max(1, n)
    seen: set[str] = set()
    per_family = {4: 0, 6: 0}
    out: list[Target] = []
    for t in targets:
        if t.address in seen:
            continue
        family = 6 if ":" in t.address else 4
        if per_family[family] >= n:
            continue
        seen.add(t.address)
        per_family[family] += 1
        out.append(t)
    return tuple(out)


def _target_id(target: Target) -> str:
    return f"{target.cluster}|{target.address}|{target.port}"


def _ms(value: float) -> str:
    return f"{value:.0f}ms" if float(value).is_integer() else f"{value:.1f}ms"
