"""The placement decision for one service: the reference per-service path of the engine.

Pure: no I/O, the clock is the ``now`` argument (seconds). One tick, per service:

1. candidates from the Placement's constraints (``plan_for``: ``static.place`` selectors,
   taints/tolerations, residency, failover order, grouped by region; computed once per model);
2. signals smoothed (EWMA; a poll under ``minRequests`` is "no data" and judges nothing);
3. a verdict per region: unhealthy (every cluster down) and SLO breach (success rate under
   ``slo.successRate``) are left at once; a region left for a breach comes back on recovery beyond
   the hysteresis band, or on probation after ``minDwell`` without data;
4. the strategy picks target shares among the eligible regions; ``spread`` (minRegions,
   maxSharePercent) shapes them; rounded to whole percent summing to 100;
5. damping: a new target waits for ``minDwell`` since the last one (unless the old one lost a
   region or the operator changed the Placement), and the weights move toward it by at most
   ``maxWeightChangePercent`` per ``stepInterval`` (gradual failback). Stale signals hold the
   previous weights.

Steps 1-4 work per region; step 5 (``conclude``) works on the few regions that carry or will
carry traffic and is shared with the batch tick (``controlplane.placement.batch``), which does
steps 2-4 for every service x region pair at once and falls back to ``decide_one`` for a service
it does not cover. A service whose inputs are unchanged (plan, down clusters, signals) with no
timer due keeps its previous Decision object.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import replace

from controlplane.feedback.signals import RegionSignal, Signals
from controlplane.placement.decision import Decision, Reason, Rule
from controlplane.placement.plan import ServicePlan, plan_for
from controlplane.placement.smoothing import Smoothed, smooth_service
from controlplane.placement.static import PlacedCluster
from controlplane.placement.strategies import STRATEGIES, Choice, RegionFacts
from controlplane.placement.weights import (
    apportion,
    cap_shares,
    positive,
    renormalize,
    step_towards,
)
from controlplane.policy.model import Model

__all__ = [
    "Health",
    "by_service",
    "conclude",
    "decide",
    "decide_all_each",
    "decide_one",
    "down_set",
    "previous_target",
]

Health = Mapping[str, bool]
"""Cluster name -> healthy. A cluster not listed counts as healthy (nobody checks it)."""

FORCED: frozenset[str] = frozenset({"unhealthy", "sloBreach"})
ELIGIBLE: frozenset[str] = frozenset({"eligible", "probation", "overLatencySlo"})


def decide_all_each(
    model: Model,
    *,
    now: float,
    signals: Signals | None = None,
    health: Health | None = None,
    previous: Mapping[str, Decision] | None = None,
    services: Iterable[str] | None = None,
) -> dict[str, Decision]:
    """``decide_all`` one service at a time: the reference the batch tick is tested against."""
    prev = previous or {}
    down = down_set(health)
    names = model.services if services is None else services
    own = by_service(signals)
    return {
        name: decide_one(model, name, now, signals, down, prev.get(name), own.get(name, {}))
        for name in names
    }


def by_service(signals: Signals | None) -> dict[str, dict[str, RegionSignal]]:
    """service -> region -> whole-service signal, in one pass (no per-key hashing later)."""
    out: dict[str, dict[str, RegionSignal]] = {}
    if signals is None or signals.stale:
        return out
    for key, value in signals.values.items():
        if not key.subset:
            out.setdefault(key.service, {})[key.region] = value
    return out


def down_set(health: Health | None) -> frozenset[str]:
    return frozenset(c for c, ok in (health or {}).items() if not ok)


def decide(
    model: Model,
    service: str,
    *,
    now: float,
    signals: Signals | None = None,
    health: Health | None = None,
    previous: Decision | None = None,
) -> Decision:
    """The Decision for ``service`` at ``now``. ``signals=None``: no feedback source (not stale)."""
    own = by_service(signals).get(service, {})
    return decide_one(model, service, now, signals, down_set(health), previous, own)


def previous_target(prev: Decision | None, plan: ServicePlan) -> dict[str, int]:
    """The previous target's serving regions that are still candidates."""
    if prev is None:
        return {}
    return {r: w for r, w in positive(prev.target).items() if r in plan.region_index}


def decide_one(
    model: Model,
    service: str,
    now: float,
    signals: Signals | None,
    down_all: frozenset[str],
    previous: Decision | None,
    own: Mapping[str, RegionSignal],
) -> Decision:
    plan = plan_for(model, service)
    prev = previous if previous is not None and previous.service == service else None
    stale = signals is not None and signals.stale
    signals_at = signals.at if signals is not None else None
    down = plan.cluster_names & down_all if down_all else frozenset()
    seen: tuple[RegionSignal | None, ...] = ()
    if signals is not None and not stale:
        seen = tuple(own.get(r) for r in plan.region_names)
    same_plan = prev is not None and (prev.plan is plan or prev.plan == plan)
    if (
        prev is not None
        and same_plan
        and prev.stale == stale
        and prev.down == down
        and prev.seen == seen
        and (prev.next_decision_at is None or now < prev.next_decision_at)
    ):
        return prev if prev.plan is plan else replace(prev, plan=plan)
    if not plan.regions:
        return _no_candidates(plan, prev, now, stale, signals_at)
    facts = _facts(plan, down, prev, None if signals is None or stale else own, now)
    breached = _judge(facts, prev, plan, now)
    eligible = [f for f in facts if f.verdict in ELIGIBLE]
    prev_target = previous_target(prev, plan)
    if eligible:
        k = min(plan.spread.min_regions, max(1, len(eligible)))
        # without a feedback source there will never be data to wait for: the current choice
        # is not held for lack of it (a returning region is weighed again, after the dwell)
        current = prev_target if signals is not None else {}
        choice = STRATEGIES[plan.strategy.type](eligible, plan.strategy, k, current)
    else:
        anyone = any(f.healthy for f in facts)
        pool = [f for f in facts if f.healthy] or facts
        choice = Choice(
            {f.name: 1.0 for f in pool},
            [
                "no region qualifies: every healthy region serves"
                if anyone
                else "every region is down: all of them serve (like the GTM's answerAll)"
            ],
        )
    return conclude(
        plan,
        prev,
        now,
        stale=stale,
        signals_at=signals_at,
        same_plan=same_plan,
        down=down,
        facts=tuple(facts),
        verdicts={f.name: f.verdict for f in facts},
        breached=breached,
        eligible_names={f.name for f in eligible},
        prev_target=prev_target,
        choice=choice,
        smoothed={f.name: f.smoothed for f in facts if f.smoothed is not None},
        seen=seen,
        units=lambda: [(f.name, f.clusters, f.healthy) for f in facts],
    )


Unit = tuple[str, Sequence[PlacedCluster], Sequence[PlacedCluster]]
"""(region, its placed clusters, the healthy ones), in candidate order."""


def conclude(
    plan: ServicePlan,
    prev: Decision | None,
    now: float,
    *,
    stale: bool,
    signals_at: float | None,
    same_plan: bool,
    down: frozenset[str],
    facts: Sequence[RegionFacts],
    verdicts: Mapping[str, str],
    breached: dict[str, float],
    eligible_names: Set[str],
    prev_target: dict[str, int],
    choice: Choice,
    smoothed: Mapping[str, Smoothed],
    seen: Sequence[RegionSignal | None],
    units: Callable[[], Iterable[Unit]],
) -> Decision:
    """Step 5 and the explanation, from the per-region verdicts and the strategy's choice."""
    strategy = plan.strategy
    all_excluded = not eligible_names
    details: list[str] = list(choice.details)
    computed, infeasible = _shape(plan, choice.shares)
    if infeasible:
        details.append(infeasible)
    computed = dict(computed)

    forced = sorted(r for r in (prev.weights if prev else {}) if r not in eligible_names)
    dwell_hold = False
    if prev is None:
        target, since, weights, changed = computed, now, computed, now
    else:
        lost = [r for r in prev_target if r not in eligible_names]
        if stale:
            target = renormalize(prev_target, eligible_names) or computed
            since = prev.since if target == prev_target else now
        elif computed == prev_target:
            target, since = prev_target, prev.since
        elif lost or not prev_target or all_excluded:
            target, since = computed, now
        elif not same_plan:  # the operator changed the policy: no dwell, paced steps still apply
            target, since = computed, now
            details.append("the Placement changed: its new target is adopted without the dwell")
        elif now < prev.since + plan.dwell:
            target, since, dwell_hold = prev_target, prev.since, True
        else:
            target, since = computed, now
        keep = eligible_names if not all_excluded else set(target)
        base = (
            dict(_settled(tuple(prev.weights.items())))
            if keep is plan.region_set and plan.region_set.issuperset(prev.weights)
            else renormalize(prev.weights, keep)
        )
        if not base:
            base = dict(target)
        if base != target and not stale and now - prev.changed_at >= plan.step_interval:
            weights = positive(
                step_towards(base, target, strategy.damping.max_weight_change_percent)
            )
        else:
            weights = base
        changed = prev.changed_at if weights == dict(prev.weights) else now

    rule = _rule(strategy.type, stale, forced, dwell_hold, weights, target, choice, all_excluded)
    summary = _summary(rule, forced, verdicts, weights, target, since, plan)
    next_at = _next_decision(
        now, dwell_hold, since, plan, weights, target, changed, breached, verdicts
    )
    if (
        prev is not None
        and prev.down == down
        and dict(prev.weights) == weights
        and prev.plan is plan
    ):
        placed = prev.placed
    else:
        placed = _placed(units(), weights, strategy.type)
    return Decision(
        service=plan.service,
        strategy=strategy.type,
        placed=placed,
        weights=weights,
        target=target,
        facts=facts,
        reason=Reason(rule, summary, tuple(details), plan.thresholds),
        made_at=now,
        since=since,
        changed_at=changed,
        dwell_until=since + plan.dwell,
        next_decision_at=next_at,
        stale=stale,
        signals_at=signals_at,
        smoothed=smoothed,
        breached=breached,
        verdicts=verdicts,
        latency_percentile=strategy.latency_percentile,
        plan=plan,
        down=down,
        seen=seen,
    )


def _facts(
    plan: ServicePlan,
    down: frozenset[str],
    prev: Decision | None,
    own: Mapping[str, RegionSignal] | None,
    now: float,
) -> list[RegionFacts]:
    damping = plan.strategy.damping
    memory = dict(prev.smoothed) if prev else {}
    if prev is not None:
        # a region out for a breach and unmeasured since starts its success rate afresh, so the
        # bad samples that made it leave do not count against it again on probation
        for region in prev.breached:
            if region in memory and not prev.judged(region):
                memory[region] = replace(memory[region], success_rate=None)
    smoothed, judged = smooth_service(
        plan.region_names,
        memory,
        own,
        alpha=damping.ewma_alpha,
        min_requests=damping.min_requests,
        now=now,
        forget_after=plan.forget_after,
    )
    facts = []
    for r in plan.regions:
        healthy: Sequence[PlacedCluster] = r.clusters
        cost, capacity = r.cost, r.capacity
        if down and not down.isdisjoint(p.name for p in r.clusters):
            up = [i for i, p in enumerate(r.clusters) if p.name not in down]
            healthy = tuple(r.clusters[i] for i in up)
            use = up or range(len(r.clusters))
            cost = min(r.costs[i] for i in use)
            caps = [c for i in use if (c := r.capacities[i])]
            capacity = float(sum(caps)) if caps else None
        name = r.name
        facts.append(
            RegionFacts(
                name,
                r.order,
                r.clusters,
                healthy,
                cost,
                capacity,
                smoothed.get(name),
                name in judged,
            )
        )
    return facts


def _judge(
    facts: list[RegionFacts], prev: Decision | None, plan: ServicePlan, now: float
) -> dict[str, float]:
    """Set each region's verdict; return the regions held out for an SLO breach (-> since when)."""
    strategy = plan.strategy
    slo = strategy.slo
    band = strategy.hysteresis.threshold_percent / 100.0
    prev_breached = prev.breached if prev else {}
    prev_verdicts = prev.verdicts if prev else {}
    breached: dict[str, float] = {}
    for f in facts:
        sm = f.smoothed
        if not f.healthy:
            f.verdict = "unhealthy"
            f.note = f"all {len(f.clusters)} placed cluster(s) down"
            if f.name in prev_breached:
                breached[f.name] = prev_breached[f.name]
            continue
        floor = slo.success_rate if slo is not None else None
        if floor is not None and f.judged and sm is not None and sm.success_rate is not None:
            recover_at = 1.0 - (1.0 - floor) * (1.0 - band)
            was = f.name in prev_breached
            if sm.success_rate < floor or (was and sm.success_rate < recover_at):
                f.verdict = "sloBreach"
                f.note = (
                    f"success {sm.success_rate:.4f} < slo {floor:g}"
                    if sm.success_rate < floor
                    else f"success {sm.success_rate:.4f} not yet back above {recover_at:.4f}"
                    f" (slo {floor:g} + {band * 100:g}% band)"
                )
                breached[f.name] = now  # the latest evidence: probation counts from here
                continue
        elif f.name in prev_breached:
            left = prev_breached[f.name]
            if now - left < plan.dwell:
                f.verdict = "sloBreach"
                f.note = f"no data since the breach; probation at {left + plan.dwell:.1f}"
                breached[f.name] = left
                continue
            f.verdict = "probation"
            f.note = "no data since the breach, minDwell passed: may serve again"
            breached[f.name] = left
        if strategy.type == "lowestCost" and slo is not None and slo.latency_p99 is not None:
            p99 = sm.latency_p99_ms if sm is not None else None
            limit = float(slo.latency_p99)
            if p99 is not None:
                was_over = prev_verdicts.get(f.name) == "overLatencySlo"
                bound = limit * (1.0 - band) if was_over else limit
                if p99 > bound:
                    f.verdict = "overLatencySlo"
                    f.note = f"p99 {p99:.1f}ms > {bound:.1f}ms" + (
                        f" (slo {limit:g}ms - {band * 100:g}% band)" if was_over else ""
                    )
    return breached


def _rule(
    strategy: str,
    stale: bool,
    forced: list[str],
    dwell_hold: bool,
    weights: Mapping[str, int],
    target: Mapping[str, int],
    choice: Choice,
    all_excluded: bool,
) -> Rule:
    if stale:
        return "hold.stale"
    if forced:
        return "leave"
    if all_excluded:
        return "allExcluded"
    if dwell_hold:
        return "hold.dwell"
    if dict(weights) != dict(target):
        return "step"
    if choice.held == "hold.hysteresis":
        return "hold.hysteresis"
    if choice.held == "hold.noData":
        return "hold.noData"
    return strategy  # type: ignore[return-value]


def _fmt(weights: Mapping[str, int]) -> str:
    return _fmt_items(tuple(weights.items()))


@functools.lru_cache(maxsize=4096)
def _fmt_items(weights: tuple[tuple[str, int], ...]) -> str:
    return (
        ", ".join(f"{r} {w}%" for r, w in sorted(weights, key=lambda kv: (-kv[1], kv[0]))) or "none"
    )


def _shape(plan: ServicePlan, shares: Mapping[str, float]) -> tuple[dict[str, int], str | None]:
    """The strategy's shares capped by ``maxSharePercent`` and rounded to whole percent (and the
    detail when the cap cannot hold); a pure function of the plan and the shares, kept per plan."""
    key = ("shape", tuple(shares.items()))
    found: tuple[dict[str, int], str | None] | None = plan.memo.get(key)
    if found is None:
        capped, feasible = cap_shares(shares, plan.spread.max_share_percent / 100.0)
        infeasible = (
            None
            if feasible
            else f"maxSharePercent {plan.spread.max_share_percent:g} cannot hold with"
            f" {sum(1 for v in capped.values() if v > 0)} region(s): cap given up"
        )
        found = (positive(apportion(capped)), infeasible)
        if len(plan.memo) < _MEMO_PER_PLAN:
            plan.memo[key] = found
    return found


_MEMO_PER_PLAN = 256


@functools.lru_cache(maxsize=4096)
def _settled(weights: tuple[tuple[str, int], ...]) -> dict[str, int]:
    """``renormalize`` of weights that keep every region (read-only: callers copy it)."""
    return renormalize(dict(weights), {r for r, _ in weights})


def _summary(
    rule: Rule,
    forced: list[str],
    verdicts: Mapping[str, str],
    weights: Mapping[str, int],
    target: Mapping[str, int],
    since: float,
    plan: ServicePlan,
) -> str:
    now_w = _fmt(weights)
    if rule == "hold.stale":
        return f"signals are stale: holding {now_w}"
    if rule == "leave":
        why = "; ".join(f"{r} {verdicts.get(r, 'no longer placed')}" for r in forced)
        return f"left {', '.join(forced)} at once ({why}); now {now_w}, target {_fmt(target)}"
    if rule == "hold.dwell":
        return f"holding {_fmt(target)} until {since + plan.dwell:.1f} (minDwell {plan.dwell:g}s)"
    if rule == "step":
        step = plan.strategy.damping.max_weight_change_percent
        return f"moving toward {_fmt(target)} by at most {step:g} points per {plan.step_interval:g}s: now {now_w}"
    if rule == "allExcluded":
        return f"no region qualifies: serving {now_w}"
    if rule == "hold.hysteresis":
        return f"a better choice is inside the hysteresis band: keeping {now_w}"
    if rule == "hold.noData":
        return f"too little data to judge: keeping {now_w}"
    return f"{rule}: {now_w}"


def _next_decision(
    now: float,
    dwell_hold: bool,
    since: float,
    plan: ServicePlan,
    weights: Mapping[str, int],
    target: Mapping[str, int],
    changed: float,
    breached: Mapping[str, float],
    verdicts: Mapping[str, str],
) -> float | None:
    times = []
    if dwell_hold:
        times.append(since + plan.dwell)
    if dict(weights) != dict(target):
        times.append(changed + plan.step_interval)
    times += [t + plan.dwell for r, t in breached.items() if verdicts.get(r) == "sloBreach"]
    later = [t for t in times if t > now]
    return min(later) if later else (now + plan.step_interval if times else None)


def _placed(
    units: Iterable[Unit], weights: Mapping[str, int], strategy: str
) -> tuple[PlacedCluster, ...]:
    """Clusters with their weights: a serving region's percent split over its healthy clusters
    (by static weight for ``static``, else equally) at priority 0; every other region's clusters
    at weight 0, priority 1, 2, ... in candidate order."""
    out: list[PlacedCluster] = []
    rank = 0
    for name, clusters, healthy in units:  # in candidate order
        share = weights.get(name, 0)
        if share <= 0:
            rank += 1
            out += [PlacedCluster(p.name, p.region, 0, rank, p.preferred) for p in clusters]
            continue
        members = healthy or clusters  # every region down: all of them serve
        if len(members) == 1:
            split = {members[0].name: share}
        else:
            basis = {p.name: float(p.weight if strategy == "static" else 1) for p in members}
            if not any(v > 0 for v in basis.values()):
                basis = dict.fromkeys(basis, 1.0)
            split = apportion(basis, share)
        out += [
            PlacedCluster(p.name, p.region, split.get(p.name, 0), 0, p.preferred) for p in clusters
        ]
    out.sort(key=lambda p: (p.priority, not p.preferred, p.name))
    return tuple(out)


def _no_candidates(
    plan: ServicePlan,
    prev: Decision | None,
    now: float,
    stale: bool,
    signals_at: float | None,
) -> Decision:
    return Decision(
        service=plan.service,
        strategy=plan.strategy.type,
        placed=(),
        weights={},
        target={},
        facts=(),
        reason=Reason("noCandidates", "no cluster can serve the service (constraints leave none)"),
        made_at=now,
        since=prev.since if prev is not None and not prev.placed else now,
        changed_at=now,
        dwell_until=now,
        next_decision_at=None,
        stale=stale,
        signals_at=signals_at,
        plan=plan,
    )
