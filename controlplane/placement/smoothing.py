"""EWMA smoothing of one service's per-region signals, with the minimum-volume rule.

A poll counts for a region only when it carries at least ``min_requests`` completed requests; a
poll below that is "no data" and leaves the smoothed values as they were (they are then
remembered, not judged). A smoothed value older than ``forget_after`` seconds restarts from the
next sample instead of blending with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controlplane.feedback.signals import RegionSignal


@dataclass(frozen=True, slots=True)
class Smoothed:
    success_rate: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_p99_ms: float | None = None
    requests: float | None = None  # the last judged poll's volume (not smoothed)
    updated_at: float = 0.0

    def latency(self, percentile: str) -> float | None:
        if percentile == "p50":
            return self.latency_p50_ms
        if percentile == "p90":
            return self.latency_p90_ms
        return self.latency_p99_ms


def _blend(old: float | None, new: float | None, alpha: float) -> float | None:
    if new is None:
        return old
    if old is None:
        return new
    return alpha * new + (1.0 - alpha) * old


def enough_volume(signal: RegionSignal | None, min_requests: int) -> bool:
    if signal is None:
        return False
    if signal.requests is None:
        return min_requests == 0 and signal.success_rate is not None
    return signal.requests >= min_requests and signal.requests > 0


def smooth_region(
    old: Smoothed | None,
    signal: RegionSignal,
    *,
    alpha: float,
    now: float,
    forget_after: float,
) -> Smoothed:
    if old is None or now - old.updated_at > forget_after:
        return Smoothed(
            signal.success_rate,
            signal.latency_p50_ms,
            signal.latency_p90_ms,
            signal.latency_p99_ms,
            signal.requests,
            now,
        )
    return Smoothed(
        _blend(old.success_rate, signal.success_rate, alpha),
        _blend(old.latency_p50_ms, signal.latency_p50_ms, alpha),
        _blend(old.latency_p90_ms, signal.latency_p90_ms, alpha),
        _blend(old.latency_p99_ms, signal.latency_p99_ms, alpha),
        signal.requests,
        now,
    )


def smooth_service(
    regions: Sequence[str],
    previous: Mapping[str, Smoothed],
    signals: Mapping[str, RegionSignal] | None,
    *,
    alpha: float,
    min_requests: int,
    now: float,
    forget_after: float,
) -> tuple[dict[str, Smoothed], frozenset[str]]:
    """(smoothed values per region, regions judged this poll); ``signals`` is one service's, by
    region. Stale or absent signals (None) judge none."""
    out = {r: previous[r] for r in regions if r in previous}
    if signals is None:
        return out, frozenset()
    fresh: set[str] = set()
    for region in regions:
        signal = signals.get(region)
        if signal is None or not enough_volume(signal, min_requests):
            continue
        out[region] = smooth_region(
            out.get(region), signal, alpha=alpha, now=now, forget_after=forget_after
        )
        fresh.add(region)
    return out, frozenset(fresh)
