"""Whole-percent weight arithmetic: apportioning shares, capping a region's share, pacing changes.

Every function returns weights that sum to exactly ``total`` (100) whenever any share is positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Set


def apportion(shares: Mapping[str, float], total: int = 100) -> dict[str, int]:
    """Whole numbers proportional to ``shares`` summing to ``total`` (largest remainder, ties by key)."""
    positive = {k: v for k, v in shares.items() if v > 0}
    out = dict.fromkeys(shares, 0)
    if not positive:
        return out
    if len(positive) == 1:  # what the arithmetic below gives for one share, without it
        out[next(iter(positive))] = total
        return out
    top = max(positive.values())
    unit = {k: v / top for k, v in positive.items()}  # tiny or huge shares stay finite
    scale = total / sum(unit.values())
    exact = {k: v * scale for k, v in unit.items()}
    floors = {k: math.floor(x) for k, x in exact.items()}
    left = total - sum(floors.values())
    for k in sorted(positive, key=lambda k: (floors[k] - exact[k], k))[: max(0, left)]:
        floors[k] += 1
    out.update(floors)
    return out


def cap_shares(shares: Mapping[str, float], cap: float) -> tuple[dict[str, float], bool]:
    """Shares as fractions of 1, none above ``cap``: the excess goes to the other regions.

    The excess goes to regions that already have a share, in proportion; when they are full it
    goes to the zero-share ones equally. Returns (shares, feasible): when no region can take the
    excess the cap is given up (availability first) and ``feasible`` is False.
    """
    total = sum(v for v in shares.values() if v > 0)
    if total <= 0:
        return dict(shares), True
    result = {k: max(0.0, v) / total for k, v in shares.items()}
    if cap >= 1.0:
        return result, True
    for _ in range(len(result) + 1):
        over = [k for k, v in result.items() if v > cap + 1e-12]
        if not over:
            return result, True
        excess = sum(result[k] - cap for k in over)
        for k in over:
            result[k] = cap
        room = {k: v for k, v in result.items() if 0 < v < cap - 1e-12}
        if not room:
            room = {k: 1.0 for k, v in result.items() if v == 0}
        if not room:
            break
        base = sum(room.values())
        for k, v in room.items():
            result[k] += excess * v / base
    return {k: max(0.0, v) / total for k, v in shares.items()}, False


def step_towards(
    current: Mapping[str, int], target: Mapping[str, int], max_change: float
) -> dict[str, int]:
    """Move ``current`` toward ``target`` by at most ``max_change`` points per region.

    Both sum to 100, so scaling every difference by the same factor keeps the sum: the region with
    the largest difference moves by exactly ``max_change`` and the rest in proportion.
    """
    keys = sorted(set(current) | set(target))
    delta = {k: target.get(k, 0) - current.get(k, 0) for k in keys}
    biggest = max((abs(d) for d in delta.values()), default=0)
    if biggest <= max_change:
        return {k: target.get(k, 0) for k in keys}
    factor = max_change / biggest
    return apportion({k: current.get(k, 0) + delta[k] * factor for k in keys})


def renormalize(weights: Mapping[str, int], keep: Set[str]) -> dict[str, int]:
    """``weights`` restricted to ``keep`` and scaled back to 100 (empty when nothing is left)."""
    kept = {k: float(v) for k, v in weights.items() if k in keep and v > 0}
    if not kept:
        return {}
    return {k: v for k, v in apportion(kept).items() if v > 0}


def positive(weights: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in weights.items() if v > 0}
