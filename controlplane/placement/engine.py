"""The placement engine: model + health + signals + previous decisions + now -> one Decision per service.

Pure: no I/O, the clock is the ``now`` argument (seconds). One tick, per service:

1. candidates from the Placement's constraints (``static.place``: selectors, taints/tolerations,
   residency, failover order), grouped by region;
2. signals smoothed (EWMA; a poll under ``minRequests`` is "no data" and judges nothing);
3. a verdict per region: unhealthy (every cluster down) and SLO breach (success rate under
   ``slo.successRate``) are left at once; a region left for a breach comes back on recovery beyond
   the hysteresis band, or on probation after ``minDwell`` without data;
4. the strategy picks target shares among the eligible regions; ``spread`` (minRegions,
   maxSharePercent) shapes them; rounded to whole percent summing to 100;
5. damping: a new target waits for ``minDwell`` since the last one (unless the old one lost a
   region), and the weights move toward it by at most ``maxWeightChangePercent`` per
   ``stepInterval`` (gradual failback). Stale signals hold the previous weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from controlplane.feedback.signals import Signals
from controlplane.placement.decision import Decision, Reason, RegionInput, Rule, Verdict
from controlplane.placement.smoothing import Smoothed, smooth_service
from controlplane.placement.static import PlacedCluster, place
from controlplane.placement.strategies import STRATEGIES, Choice, RegionFacts
from controlplane.placement.weights import (
    apportion,
    cap_shares,
    positive,
    renormalize,
    step_towards,
)
from controlplane.policy.model import Model
from controlplane.policy.placement import Spread, Strategy

__all__ = ["FORGET_AFTER_MIN_S", "Health", "decide", "decide_all"]

Health = Mapping[str, bool]
"""Cluster name -> healthy. A cluster not listed counts as healthy (nobody checks it)."""

FORCED: frozenset[str] = frozenset({"unhealthy", "sloBreach"})
ELIGIBLE: frozenset[str] = frozenset({"eligible", "probation", "overLatencySlo"})
FORGET_AFTER_MIN_S = 10.0  # a smoothed value older than max(2 x minDwell, this) restarts
_DEFAULT_STRATEGY = Strategy()
_DEFAULT_SPREAD = Spread()


@dataclass(frozen=True, slots=True)
class _Params:
    strategy: Strategy
    spread: Spread
    dwell: float
    step_interval: float
    forget_after: float
    thresholds: Mapping[str, float | str | None]


_PARAMS_CACHE: dict[int, tuple[object, _Params]] = {}


def _params(strategy: Strategy, spread: Spread) -> _Params:
    key = id(strategy) ^ (id(spread) << 1)
    hit = _PARAMS_CACHE.get(key)
    if hit is not None and hit[0] is strategy:
        return hit[1]
    d, h, slo = strategy.damping, strategy.hysteresis, strategy.slo
    dwell = h.min_dwell / 1000.0
    params = _Params(
        strategy=strategy,
        spread=spread,
        dwell=dwell,
        step_interval=d.step_interval / 1000.0,
        forget_after=max(2.0 * dwell, FORGET_AFTER_MIN_S),
        thresholds={
            "strategy": strategy.type,
            "latencyPercentile": strategy.latency_percentile,
            "sloSuccessRate": slo.success_rate if slo else None,
            "sloLatencyP99Ms": float(slo.latency_p99)
            if slo and slo.latency_p99 is not None
            else None,
            "minDwellS": dwell,
            "thresholdPercent": h.threshold_percent,
            "ewmaAlpha": d.ewma_alpha,
            "minRequests": float(d.min_requests),
            "maxWeightChangePercent": d.max_weight_change_percent,
            "stepIntervalS": d.step_interval / 1000.0,
            "stickinessBonusPercent": d.stickiness_bonus_percent,
            "minRegions": float(spread.min_regions),
            "maxSharePercent": spread.max_share_percent,
        },
    )
    if len(_PARAMS_CACHE) > 4096:
        _PARAMS_CACHE.clear()
    _PARAMS_CACHE[key] = (strategy, params)
    return params


def decide_all(
    model: Model,
    *,
    now: float,
    signals: Signals | None = None,
    health: Health | None = None,
    previous: Mapping[str, Decision] | None = None,
    services: Iterable[str] | None = None,
) -> dict[str, Decision]:
    """One Decision per service of the model (or per name in ``services``)."""
    prev = previous or {}
    names = model.services if services is None else services
    return {
        name: decide(model, name, now=now, signals=signals, health=health, previous=prev.get(name))
        for name in names
    }


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
    placement = model.placement_for(service)
    spec = placement.spec if placement is not None else None
    params = _params(
        spec.strategy if spec else _DEFAULT_STRATEGY,
        spec.spread if spec is not None and spec.spread is not None else _DEFAULT_SPREAD,
    )
    strategy = params.strategy
    prev = previous if previous is not None and previous.service == service else None
    candidates = place(model, service)
    stale = signals is not None and signals.stale
    signals_at = signals.at if signals is not None else None
    if not candidates:
        return _no_candidates(service, strategy.type, prev, now, stale, signals_at)
    facts = _facts(model, service, candidates, health or {}, prev, signals, params, now)
    breached = _judge(facts, prev, params, now)
    by_name = {f.name: f for f in facts}
    eligible = [f for f in facts if f.verdict in ELIGIBLE]
    eligible_names = {f.name for f in eligible}
    k = min(params.spread.min_regions, max(1, len(eligible)))
    prev_target = {r: w for r, w in positive(prev.target).items() if r in by_name} if prev else {}
    details: list[str] = []
    all_excluded = not eligible
    if eligible:
        choice = STRATEGIES[strategy.type](eligible, strategy, k, prev_target)
    else:
        pool = [f for f in facts if f.healthy] or facts
        choice = Choice(
            {f.name: 1.0 for f in pool},
            [
                "no region qualifies: every healthy region serves"
                if any(f.healthy for f in facts)
                else "every region is down: all of them serve (like the GTM's answerAll)"
            ],
        )
    details += choice.details
    shares, feasible = cap_shares(choice.shares, params.spread.max_share_percent / 100.0)
    if not feasible:
        details.append(
            f"maxSharePercent {params.spread.max_share_percent:g} cannot hold with"
            f" {sum(1 for v in shares.values() if v > 0)} region(s): cap given up"
        )
    computed = positive(apportion(shares))

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
        elif now < prev.since + params.dwell:
            target, since, dwell_hold = prev_target, prev.since, True
        else:
            target, since = computed, now
        base = renormalize(prev.weights, eligible_names if not all_excluded else set(target))
        if not base:
            base = dict(target)
        if base != target and not stale and now - prev.changed_at >= params.step_interval:
            weights = positive(
                step_towards(base, target, strategy.damping.max_weight_change_percent)
            )
        else:
            weights = base
        changed = prev.changed_at if weights == dict(prev.weights) else now

    rule = _rule(strategy.type, stale, forced, dwell_hold, weights, target, choice, all_excluded)
    summary = _summary(rule, forced, by_name, weights, target, since, params, prev)
    next_at = _next_decision(
        now, dwell_hold, since, params, weights, target, changed, breached, facts
    )
    return Decision(
        service=service,
        strategy=strategy.type,
        placed=_placed(facts, weights, strategy.type),
        weights=weights,
        target=target,
        regions=tuple(_region_input(f, weights, target, strategy) for f in facts),
        reason=Reason(rule, summary, tuple(details), params.thresholds),
        made_at=now,
        since=since,
        changed_at=changed,
        dwell_until=since + params.dwell,
        next_decision_at=next_at,
        stale=stale,
        signals_at=signals_at,
        smoothed={f.name: f.smoothed for f in facts if f.smoothed is not None},
        breached=breached,
    )


def _facts(
    model: Model,
    service: str,
    candidates: tuple[PlacedCluster, ...],
    health: Health,
    prev: Decision | None,
    signals: Signals | None,
    params: _Params,
    now: float,
) -> list[RegionFacts]:
    grouped: dict[str, list[PlacedCluster]] = {}
    for p in candidates:
        grouped.setdefault(p.region, []).append(p)
    damping = params.strategy.damping
    memory = dict(prev.smoothed) if prev else {}
    if prev is not None:
        # a region out for a breach and unmeasured since starts its success rate afresh, so the
        # bad samples that made it leave do not count against it again on probation
        for r in prev.regions:
            if r.region in prev.breached and not r.judged and r.region in memory:
                memory[r.region] = replace(memory[r.region], success_rate=None)
    smoothed, judged = smooth_service(
        service,
        list(grouped),
        memory,
        signals,
        alpha=damping.ewma_alpha,
        min_requests=damping.min_requests,
        now=now,
        forget_after=params.forget_after,
    )
    facts = []
    for order, (region, placed) in enumerate(grouped.items()):
        healthy = [p for p in placed if health.get(p.name, True)]
        specs = [model.clusters[p.name].spec for p in (healthy or placed)]
        caps = [s.capacity.requests_per_second for s in specs if s.capacity.requests_per_second]
        facts.append(
            RegionFacts(
                name=region,
                order=order,
                clusters=placed,
                healthy=healthy,
                cost=min(s.cost_weight for s in specs),
                capacity=float(sum(caps)) if caps else None,
                smoothed=smoothed.get(region),
                judged=region in judged,
            )
        )
    return facts


def _judge(
    facts: list[RegionFacts], prev: Decision | None, params: _Params, now: float
) -> dict[str, float]:
    """Set each region's verdict; return the regions held out for an SLO breach (-> since when)."""
    strategy = params.strategy
    slo = strategy.slo
    band = strategy.hysteresis.threshold_percent / 100.0
    prev_breached = prev.breached if prev else {}
    prev_verdicts = {r.region: r.verdict for r in prev.regions} if prev else {}
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
                breached[f.name] = now if sm.success_rate < floor else prev_breached[f.name]
                continue
            f.note = f"success {sm.success_rate:.4f} >= slo {floor:g}"
        elif f.name in prev_breached:
            left = prev_breached[f.name]
            if now - left < params.dwell:
                f.verdict = "sloBreach"
                f.note = f"no data since the breach; probation at {left + params.dwell:.1f}"
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
                    continue
                f.note = (f.note + "; " if f.note else "") + f"p99 {p99:.1f}ms <= slo {limit:g}ms"
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
    return (
        ", ".join(f"{r} {w}%" for r, w in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0])))
        or "none"
    )


def _summary(
    rule: Rule,
    forced: list[str],
    facts: Mapping[str, RegionFacts],
    weights: Mapping[str, int],
    target: Mapping[str, int],
    since: float,
    params: _Params,
    prev: Decision | None,
) -> str:
    now_w = _fmt(weights)
    if rule == "hold.stale":
        return f"signals are stale: holding {now_w}"
    if rule == "leave":
        why = "; ".join(
            f"{r} {facts[r].verdict if r in facts else 'no longer placed'}" for r in forced
        )
        return f"left {', '.join(forced)} at once ({why}); now {now_w}, target {_fmt(target)}"
    if rule == "hold.dwell":
        return (
            f"holding {_fmt(target)} until {since + params.dwell:.1f} (minDwell {params.dwell:g}s)"
        )
    if rule == "step":
        step = params.strategy.damping.max_weight_change_percent
        return f"moving toward {_fmt(target)} by at most {step:g} points per {params.step_interval:g}s: now {now_w}"
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
    params: _Params,
    weights: Mapping[str, int],
    target: Mapping[str, int],
    changed: float,
    breached: Mapping[str, float],
    facts: list[RegionFacts],
) -> float | None:
    times = []
    if dwell_hold:
        times.append(since + params.dwell)
    if dict(weights) != dict(target):
        times.append(changed + params.step_interval)
    verdicts = {f.name: f.verdict for f in facts}
    times += [t + params.dwell for r, t in breached.items() if verdicts.get(r) == "sloBreach"]
    later = [t for t in times if t > now]
    return min(later) if later else (now + params.step_interval if times else None)


def _placed(
    facts: list[RegionFacts], weights: Mapping[str, int], strategy: str
) -> tuple[PlacedCluster, ...]:
    out: list[PlacedCluster] = []
    standby = [f for f in facts if weights.get(f.name, 0) <= 0]
    rank = {f.name: i + 1 for i, f in enumerate(sorted(standby, key=lambda f: f.order))}
    for f in facts:
        share = weights.get(f.name, 0)
        members = f.healthy or f.clusters  # every region down: all of them serve
        healthy = {p.name for p in members}
        basis = {p.name: float(p.weight if strategy == "static" else 1) for p in members}
        if share > 0 and not any(v > 0 for v in basis.values()):
            basis = dict.fromkeys(basis, 1.0)
        split = apportion(basis, share) if share > 0 else {}
        priority = 0 if share > 0 else rank[f.name]
        for p in f.clusters:
            weight = split.get(p.name, 0) if p.name in healthy else 0
            out.append(PlacedCluster(p.name, p.region, weight, priority, p.preferred))
    out.sort(key=lambda p: (p.priority, not p.preferred, p.name))
    return tuple(out)


def _region_input(
    f: RegionFacts, weights: Mapping[str, int], target: Mapping[str, int], strategy: Strategy
) -> RegionInput:
    sm: Smoothed | None = f.smoothed
    weight = weights.get(f.name, 0)
    verdict: Verdict = f.verdict  # type: ignore[assignment]
    if verdict == "eligible" and weight > 0:
        verdict = "serving"
    return RegionInput(
        region=f.name,
        clusters=tuple(p.name for p in f.clusters),
        healthy=bool(f.healthy),
        verdict=verdict,
        weight=weight,
        target=target.get(f.name, 0),
        judged=f.judged,
        requests=sm.requests if sm else None,
        success_rate=sm.success_rate if sm else None,
        latency_ms=sm.latency(strategy.latency_percentile) if sm else None,
        cost=f.cost,
        capacity=f.capacity,
        note=f.note,
    )


def _no_candidates(
    service: str,
    strategy: str,
    prev: Decision | None,
    now: float,
    stale: bool,
    signals_at: float | None,
) -> Decision:
    return Decision(
        service=service,
        strategy=strategy,
        placed=(),
        weights={},
        target={},
        regions=(),
        reason=Reason("noCandidates", "no cluster can serve the service (constraints leave none)"),
        made_at=now,
        since=prev.since if prev is not None and not prev.placed else now,
        changed_at=now,
        dwell_until=now,
        next_decision_at=None,
        stale=stale,
        signals_at=signals_at,
    )
