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


def enough_volume(signal: RegionSignal | None, min_requests: int) -> bool:
    if signal is None:
        return False
    if signal.requests is None:
        return min_requests == 0 and signal.success_rate is not None
    return signal.requests >= min_requests and signal.requests > 0


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
    beta = 1.0 - alpha
    get = signals.get
    for region in regions:
        sig = get(region)
        if sig is None or not enough_volume(sig, min_requests):
            continue
        fresh.add(region)
        old = out.get(region)
        if old is None or now - old.updated_at > forget_after:
            out[region] = Smoothed(
                sig.success_rate,
                sig.latency_p50_ms,
                sig.latency_p90_ms,
                sig.latency_p99_ms,
                sig.requests,
                now,
            )
            continue
        # inline EWMA (this loop runs for every service x region each poll): a missing sample
        # keeps the old value, a missing old value takes the sample
        ok, p50, p90, p99 = (
            sig.success_rate,
            sig.latency_p50_ms,
            sig.latency_p90_ms,
            sig.latency_p99_ms,
        )
        o_ok, o50, o90, o99 = (
            old.success_rate,
            old.latency_p50_ms,
            old.latency_p90_ms,
            old.latency_p99_ms,
        )
        out[region] = Smoothed(
            o_ok if ok is None else ok if o_ok is None else alpha * ok + beta * o_ok,
            o50 if p50 is None else p50 if o50 is None else alpha * p50 + beta * o50,
            o90 if p90 is None else p90 if o90 is None else alpha * p90 + beta * o90,
            o99 if p99 is None else p99 if o99 is None else alpha * p99 + beta * o99,
            sig.requests,
            now,
        )
    return out, frozenset(fresh)
