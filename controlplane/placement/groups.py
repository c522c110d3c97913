"""Per client group: which regions a service's DNS answers name, from the service's Decision.

The GTM consumes this instead of damping on its own: this module and the engine are the one
place where answers are damped. A group is only ever answered with regions the Decision gives
weight (the regions Envoy sends the service's traffic to), so DNS and Envoy cannot disagree.

- ``by_latency`` (the GlobalService steers by ``lowestLatency``; by default: the Placement's
  strategy is ``lowestLatency``): each group gets the serving region with the lowest latency *as
  that group sees it* (measured ``client_latency_ms`` over the GlobalService's typed-in matrix),
  damped like the engine: stickiness bonus, hysteresis band (``thresholdPercent``), minimum dwell
  per group (``minDwell``); a region the Decision stopped serving is left at once. The other
  serving regions follow in the group's latency order (``fallback``: where DNS goes while the
  GTM's health checks see the chosen region down and the Decision has not left it yet).
- otherwise every group gets the Decision's serving regions, heaviest first, and the GTM's own
  strategy (failover, weighted, geo, roundRobin) picks among them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from controlplane.placement.decision import Decision, Reason, Rule
from controlplane.placement.strategies import inside_band, latency_chain, rank_by_latency
from controlplane.policy.model import Model
from controlplane.policy.placement import Strategy

__all__ = ["GroupChoice", "client_latency", "decide_groups", "next_group_wake"]


@dataclass(frozen=True, slots=True)
class GroupChoice:
    service: str
    group: str
    regions: tuple[tuple[str, int], ...]  # (region, percent), best first; sum 100
    reason: Reason
    made_at: float
    since: float  # these regions have been answered since
    dwell_until: float  # before this a better region is held off (rule ``hold.dwell``)
    latency_ms: Mapping[str, float] = field(default_factory=dict)  # the inputs, per region
    fallback: tuple[str, ...] = ()  # the Decision's other serving regions, best first
    decision_rule: str = ""  # the service Decision's rule this choice was made from
    decision_dwell_until: float | None = None  # the Decision's own dwell holds its target
    # change detection: the Decision and latency row this choice was computed from
    source: Decision | None = field(default=None, compare=False, repr=False)
    row: Mapping[str, float] = field(default_factory=dict, compare=False, repr=False)

    @property
    def held_until(self) -> float | None:
        """When a minimum dwell that holds this group's answer ends: the group's own, or the
        service Decision's (its next tick then may give the group another region)."""
        ends = [
            t
            for t in (
                self.dwell_until if self.reason.rule == "hold.dwell" else None,
                self.decision_dwell_until,
            )
            if t is not None
        ]
        return min(ends) if ends else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "group": self.group,
            "regions": [{"region": r, "weight": w} for r, w in self.regions],
            "fallback": list(self.fallback),
            "reason": self.reason.as_dict(),
            "decisionRule": self.decision_rule,
            "decisionMadeAt": self.source.made_at if self.source is not None else None,
            "madeAt": self.made_at,
            "since": self.since,
            "dwellUntil": self.dwell_until,
            "heldUntil": self.held_until,
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
    by_latency: bool | None = None,
) -> dict[str, GroupChoice]:
    """One GroupChoice per group name for ``decision.service`` at ``now`` (seconds, injected).

    ``previous`` are this name's choices from the last call: the dwell and the hysteresis band
    are measured against them. ``by_latency`` (default: the Decision's strategy is
    ``lowestLatency``) picks each group's nearest serving region."""
    placement = model.placement_for(decision.service)
    strategy = placement.spec.strategy if placement is not None else Strategy()
    rank = decision.strategy == "lowestLatency" if by_latency is None else by_latency
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
        if rank:
            choice = _nearest(decision, group, row, strategy, now, last)
        else:
            choice = _follow(decision, group, "follows the service decision", now, last)
        out[group] = replace(choice, source=decision, row=row)
    return out


def next_group_wake(choices: Iterable[GroupChoice]) -> float | None:
    """The earliest end of a minimum dwell holding some group's answer; None when none is held."""
    ends = [t for c in choices if (t := c.held_until) is not None]
    return min(ends) if ends else None


def _decision_held(decision: Decision) -> float | None:
    return decision.dwell_until if decision.reason.rule == "hold.dwell" else None


def _decision_line(decision: Decision) -> str:
    rule, summary = decision.reason.rule, decision.reason.summary
    return f"service decision ({rule}): {summary.removeprefix(f'{rule}: ')}"


def _follow(
    decision: Decision, group: str, why: str, now: float, prev: GroupChoice | None
) -> GroupChoice:
    regions = decision.active_regions
    since = prev.since if prev is not None and prev.regions == regions else now
    reason = Reason(decision.reason.rule, why, (_decision_line(decision),))
    return GroupChoice(
        decision.service,
        group,
        regions,
        reason,
        now,
        since,
        decision.dwell_until,
        decision_rule=decision.reason.rule,
        decision_dwell_until=_decision_held(decision),
    )


def _nearest(
    decision: Decision,
    group: str,
    row: Mapping[str, float],
    strategy: Strategy,
    now: float,
    prev: GroupChoice | None,
) -> GroupChoice:
    serving = [r for r, _ in decision.active_regions]
    measured = {r: float(row[r]) for r in serving if r in row}
    if not measured:
        return _follow(
            decision, group, f"no latency data for group {group}: the service decision", now, prev
        )
    dwell = strategy.hysteresis.min_dwell / 1000.0
    candidates = list(decision.verdicts) or serving
    order = {r: i for i, r in enumerate(candidates)}
    for r in serving:
        order.setdefault(r, len(order))
    current = [r for r, _ in prev.regions] if prev is not None else []
    left = [r for r in current if r not in measured]
    best = rank_by_latency(measured, order, [] if left else current, 1, strategy)
    details = [f"group {group} latency: {latency_chain(measured, order)}"]
    rule: Rule = "lowestLatency"
    chosen = best
    if current and not left and set(best) != set(current) and len(current) == 1:
        band = inside_band(measured, current, best, strategy)
        if prev is not None and 0.0 <= now - prev.since < dwell:
            chosen, rule = current, "hold.dwell"
            details.append(
                f"holding {', '.join(current)} until {prev.since + dwell:.1f}"
                f" (minDwell {dwell:g}s); deciding again then"
            )
        elif band is not None:
            chosen, rule = current, "hold.hysteresis"
            details.append(band)
        else:
            details.append(f"switching from {', '.join(current)} to {', '.join(best)}")
    elif left:
        rule = "leave"
        details.append(f"left {', '.join(left)} at once: the service decision no longer serves it")
    details.append(_decision_line(decision))
    regions = tuple((r, 100) for r in chosen)
    since = prev.since if prev is not None and {r for r, _ in prev.regions} == set(chosen) else now
    fallback = tuple(
        sorted(
            (r for r in serving if r not in chosen),
            key=lambda r: (measured.get(r, float("inf")), order[r]),
        )
    )
    return GroupChoice(
        decision.service,
        group,
        regions,
        Reason(rule, f"answering {', '.join(chosen)}", tuple(details)),
        now,
        since,
        since + dwell,
        measured,
        fallback,
        decision.reason.rule,
        _decision_held(decision),
    )
