"""Strategies: which eligible regions should carry a service's traffic, and in what shares.

Each strategy gets the eligible regions (healthy, inside every constraint, not in SLO breach) in
candidate order and returns raw shares (any positive scale); the engine caps, rounds and damps
them. Pure functions.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from controlplane.placement.smoothing import Smoothed
from controlplane.placement.static import PlacedCluster
from controlplane.policy.placement import Strategy


@dataclass(slots=True)
class RegionFacts:
    """Everything the engine knows about one region of one service during a tick."""

    name: str
    order: int  # candidate order (failover order first, then name)
    clusters: Sequence[PlacedCluster]
    healthy: Sequence[PlacedCluster]
    cost: float
    capacity: float | None
    smoothed: Smoothed | None
    judged: bool
    verdict: str = "eligible"
    note: str = ""


@dataclass(slots=True)
class Choice:
    shares: dict[str, float]
    details: list[str] = field(default_factory=list)
    held: str | None = None  # "hold.hysteresis" / "hold.noData" when the previous choice stayed


def _equal(regions: Sequence[RegionFacts]) -> dict[str, float]:
    return {r.name: 1.0 for r in regions}


def static(
    eligible: Sequence[RegionFacts], strategy: Strategy, k: int, previous: Mapping[str, int]
) -> Choice:
    shares = {r.name: float(sum(p.weight for p in r.healthy)) for r in eligible}
    if not any(v > 0 for v in shares.values()):
        return Choice(_equal(eligible), ["every eligible region has static weight 0: equal shares"])
    return Choice(shares, ["static weights of the healthy clusters"])


def failover(
    eligible: Sequence[RegionFacts], strategy: Strategy, k: int, previous: Mapping[str, int]
) -> Choice:
    chosen = sorted(eligible, key=lambda r: r.order)[:k]
    first = min(r.order for r in eligible)
    why = "first eligible region in failover order" + (
        f" (and {k - 1} more for spread)" if k > 1 else ""
    )
    details = [why]
    if first > 0:
        details.append("earlier regions in the order are not eligible")
    return Choice(_equal(chosen), details)


def capacity(
    eligible: Sequence[RegionFacts], strategy: Strategy, k: int, previous: Mapping[str, int]
) -> Choice:
    declared = [r.capacity for r in eligible if r.capacity is not None]
    if not declared:
        return Choice(
            _equal(eligible), ["no cluster declares capacity.requestsPerSecond: equal shares"]
        )
    floor = min(declared)
    shares = {r.name: r.capacity if r.capacity is not None else floor for r in eligible}
    details = ["shares proportional to capacity.requestsPerSecond of the healthy clusters"]
    missing = [r.name for r in eligible if r.capacity is None]
    if missing:
        details.append(
            f"{', '.join(missing)} declare no capacity: counted as {floor:g} (the smallest declared)"
        )
    return Choice(shares, details)


def lowest_latency(
    eligible: Sequence[RegionFacts], strategy: Strategy, k: int, previous: Mapping[str, int]
) -> Choice:
    pct = strategy.latency_percentile
    lat = {
        r.name: v
        for r in eligible
        if r.smoothed is not None and (v := r.smoothed.latency(pct)) is not None
    }
    names = {r.name for r in eligible}
    current = [r for r in previous if r in names]
    if not lat:
        if current:
            return Choice(
                dict.fromkeys(current, 1.0),
                [f"no {pct} latency data: keeping the current regions"],
                "hold.noData",
            )
        return Choice(_equal(eligible), [f"no {pct} latency data yet: equal shares"])
    order = {r.name: r.order for r in eligible}
    unmeasured = [r.name for r in sorted(eligible, key=lambda r: r.order) if r.name not in lat]
    best = (rank_by_latency(lat, order, current, k, strategy) + unmeasured)[:k]
    details = [f"{pct} latency: {latency_chain(lat, order)}"]
    if strategy.damping.stickiness_bonus_percent and current:
        details.append(
            f"current regions ranked with a {strategy.damping.stickiness_bonus_percent:g}% bonus"
        )
    if current and len(current) == min(k, len(eligible)) and set(best) != set(current):
        if any(n not in lat for n in current):
            missing = ", ".join(n for n in current if n not in lat)
            details.append(f"no latency data for current {missing}: keeping the current regions")
            return Choice(dict.fromkeys(current, 1.0), details, "hold.noData")
        band = inside_band(lat, current, [n for n in best if n in lat], strategy)
        if band is not None:
            details.append(band)
            return Choice(dict.fromkeys(current, 1.0), details, "hold.hysteresis")
    return Choice(dict.fromkeys(best, 1.0), details)


def rank_by_latency(
    lat: Mapping[str, float],
    order: Mapping[str, int],
    current: Sequence[str],
    k: int,
    strategy: Strategy,
) -> list[str]:
    """The ``k`` lowest latencies, the current regions ranked with the stickiness bonus."""
    keep = 1.0 - strategy.damping.stickiness_bonus_percent / 100.0
    held = set(current)

    def score(name: str) -> tuple[float, int]:
        return (lat[name] * keep if name in held else lat[name], order[name])

    return heapq.nsmallest(k, lat, key=score)


def inside_band(
    lat: Mapping[str, float], current: Sequence[str], best: Sequence[str], strategy: Strategy
) -> str | None:
    """Why ``current`` stays when ``best`` is not better by ``thresholdPercent``, else None."""
    cur = sum(lat[n] for n in current) / len(current)
    new = sum(lat[n] for n in best) / len(best)
    need = strategy.hysteresis.threshold_percent
    if new <= cur * (1.0 - need / 100.0):
        return None
    gain = (cur - new) / cur * 100.0 if cur > 0 else 0.0
    return (
        f"{', '.join(best)} better by {gain:.1f}%, less than thresholdPercent {need:g}:"
        f" staying on {', '.join(current)}"
    )


CHAIN_SHOWN = 6  # a reason names the fastest few regions; every region's value is in the inputs


def latency_chain(lat: Mapping[str, float], order: Mapping[str, int]) -> str:
    fastest = heapq.nsmallest(CHAIN_SHOWN, lat, key=lambda n: (lat[n], order[n]))
    chain = " < ".join(f"{n} {lat[n]:.1f}ms" for n in fastest)
    more = len(lat) - len(fastest)
    return f"{chain} < … ({more} more)" if more > 0 else chain


def lowest_cost(
    eligible: Sequence[RegionFacts], strategy: Strategy, k: int, previous: Mapping[str, int]
) -> Choice:
    within = [r for r in eligible if r.verdict != "overLatencySlo"]
    if not within:
        pct = "p99"
        by_latency = sorted(
            eligible,
            key=lambda r: (
                r.smoothed.latency(pct)
                if r.smoothed and r.smoothed.latency(pct) is not None
                else float("inf"),
                r.order,
            ),
        )
        return Choice(
            {r.name: 1.0 for r in by_latency[:k]},
            ["no region meets the latency SLO: the lowest p99 instead"],
        )
    ranked = sorted(within, key=lambda r: (r.cost, r.order))
    chosen = ranked[:k]
    costs = ", ".join(f"{r.name} {r.cost:g}" for r in ranked)
    return Choice({r.name: 1.0 for r in chosen}, [f"cost within the SLO: {costs}"])


STRATEGIES: Mapping[
    str, Callable[[Sequence[RegionFacts], Strategy, int, Mapping[str, int]], Choice]
] = {
    "static": static,
    "failover": failover,
    "capacity": capacity,
    "lowestLatency": lowest_latency,
    "lowestCost": lowest_cost,
}
