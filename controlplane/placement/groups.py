"""Per client group: which regions a service's DNS answers name, from the service's Decision.

The GTM consumes this instead of damping on its own. Every strategy but ``lowestLatency``
answers every group with the Decision's weighted regions. ``lowestLatency`` picks, per group,
the regions with the lowest latency *as that group sees them* (measured ``client_latency_ms``
over the GlobalService's typed-in matrix), among the Decision's eligible regions, with the same
damping as the engine: stickiness bonus, hysteresis band, minimum dwell; a region the Decision
left (unhealthy, SLO breach) is left at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from controlplane.placement.decision import Decision, Reason
from controlplane.placement.strategies import inside_band, latency_chain, rank_by_latency
from controlplane.placement.weights import apportion
from controlplane.policy.model import Model
from controlplane.policy.placement import Spread, Strategy

__all__ = ["GroupChoice", "client_latency", "decide_groups"]

_OUT: frozenset[str] = frozenset({"unhealthy", "sloBreach"})


@dataclass(frozen=True, slots=True)
class GroupChoice:
    service: str
    group: str
    regions: tuple[tuple[str, int], ...]  # (region, percent), heaviest first; sum 100
    reason: Reason
    made_at: float
    since: float  # these regions have been answered since
    dwell_until: float
    latency_ms: Mapping[str, float] = field(default_factory=dict)  # the inputs, per region
    # change detection: the Decision and latency row this choice was computed from
    source: Decision | None = field(default=None, compare=False, repr=False)
    row: Mapping[str, float] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "group": self.group,
            "regions": [{"region": r, "weight": w} for r, w in self.regions],
            "reason": self.reason.as_dict(),
            "madeAt": self.made_at,
            "since": self.since,
            "dwellUntil": self.dwell_until,
            "latencyMs": dict(self.latency_ms),
        }


def client_latency(
    measured: Mapping[tuple[str, str], float],
    typed: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, dict[str, float]]:
    """group -> region -> ms: measured (``Signals.client_latency_ms``) where present, else typed."""
    out: dict[str, dict[str, float]] = {g: dict(row) for g, row in (typed or {}).items()}
    for (group, region), ms in measured.items():
        out.setdefault(group, {})[region] = ms
    return out


def decide_groups(
    model: Model,
    decision: Decision,
    groups: Iterable[str],
    latency: Mapping[str, Mapping[str, float]],
    *,
    now: float,
    previous: Mapping[str, GroupChoice] | None = None,
) -> dict[str, GroupChoice]:
    """One GroupChoice per group name for ``decision.service``."""
    placement = model.placement_for(decision.service)
    strategy = placement.spec.strategy if placement is not None else Strategy()
    spread = (
        placement.spec.spread
        if placement is not None and placement.spec.spread is not None
        else Spread()
    )
    prev = previous or {}
    out: dict[str, GroupChoice] = {}
    for group in groups:
        row = latency.get(group, {})
        last = prev.get(group)
        if last is not None and (last.service != decision.service or last.group != group):
            last = None
        if (
            last is not None
            and last.source is decision
            and last.reason.rule != "hold.dwell"
            and last.row == row
        ):
            out[group] = last  # nothing this choice depends on changed
            continue
        choice = _decide_group(decision, group, row, strategy, spread, now, last)
        out[group] = replace(choice, source=decision, row=row)
    return out


def _follow(
    decision: Decision, group: str, why: str, now: float, prev: GroupChoice | None
) -> GroupChoice:
    regions = decision.active_regions
    since = prev.since if prev is not None and prev.regions == regions else now
    reason = Reason(decision.reason.rule, why, (decision.reason.summary,))
    return GroupChoice(decision.service, group, regions, reason, now, since, decision.dwell_until)


def _decide_group(
    decision: Decision,
    group: str,
    row: Mapping[str, float],
    strategy: Strategy,
    spread: Spread,
    now: float,
    prev: GroupChoice | None,
) -> GroupChoice:
    if decision.strategy != "lowestLatency":
        return _follow(
            decision, group, f"follows the service decision ({decision.reason.rule})", now, prev
        )
    eligible = [r for r, verdict in decision.verdicts.items() if verdict not in _OUT]
    measured = {r: float(row[r]) for r in eligible if r in row}
    if not measured:
        return _follow(
            decision, group, f"no latency data for group {group}: the service decision", now, prev
        )
    dwell = strategy.hysteresis.min_dwell / 1000.0
    k = min(spread.min_regions, len(measured))
    current = [r for r, _ in prev.regions] if prev is not None else []
    left = [r for r in current if r not in measured]
    order = {r: i for i, r in enumerate(eligible)}
    best = rank_by_latency(measured, order, [] if left else current, k, strategy)
    details = [f"group {group} latency: {latency_chain(measured, order)}"]
    rule = "lowestLatency"
    chosen = best
    if current and not left and set(best) != set(current) and len(current) == k:
        band = inside_band(measured, current, best, strategy)
        if prev is not None and now < prev.since + dwell:
            chosen, rule = current, "hold.dwell"
            details.append(
                f"holding {', '.join(current)} until {prev.since + dwell:.1f} (minDwell {dwell:g}s)"
            )
        elif band is not None:
            chosen, rule = current, "hold.hysteresis"
            details.append(band)
    elif left:
        rule = "leave"
        details.append(
            f"left {', '.join(left)} at once: no longer eligible in the service decision"
        )
    weights = apportion(dict.fromkeys(chosen, 1.0))
    regions = tuple(
        sorted(((r, w) for r, w in weights.items() if w > 0), key=lambda kv: (-kv[1], order[kv[0]]))
    )
    since = prev.since if prev is not None and {r for r, _ in prev.regions} == set(chosen) else now
    summary = f"answering {', '.join(r for r, _ in regions)}"
    return GroupChoice(
        decision.service,
        group,
        regions,
        Reason(rule, summary, tuple(details)),  # type: ignore[arg-type]
        now,
        since,
        since + dwell,
        measured,
    )
