"""The leader's loop state as JSON: what it publishes to etcd and what followers and the next
leader read back.

Pure. A placement ``Decision`` keeps what was decided and the timers that pace it (weights,
target, since, changedAt, dwellUntil, breached, verdicts); the engine's smoothing memory is not
published (a new leader starts smoothing afresh from its first poll). A ``CanaryStatus`` is
published whole (phase, step, weight, stepStartedAt, failures, events), so a new leader resumes
the step where it was: the interval keeps running from the same ``stepStartedAt``, no step is
repeated or skipped. A status is only restored against a spec with the same service, subsets and
steps; a changed canary starts again, as it would on one replica.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from controlplane.canary.analysis import Check
from controlplane.canary.controller import CanaryStatus, Event, spec_key
from controlplane.placement.decision import Decision, Reason
from controlplane.placement.static import PlacedCluster
from controlplane.policy.canary import CanarySpec

PLACEMENT = "placement"  # PREFIX/decisions/placement: service -> decision
CANARIES = "canaries"  # PREFIX/decisions/canaries: canary -> status


@dataclass(frozen=True, slots=True)
class Published:
    """What a follower serves: the leader's decisions and canary statuses, as last published."""

    decisions: Mapping[str, Decision] = field(default_factory=dict)
    canaries: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # raw, see restore
    revision: int = 0


def encode_decision(d: Decision) -> dict[str, Any]:
    data = d.as_dict()
    data["placed"] = [
        {
            "cluster": p.name,
            "region": p.region,
            "weight": p.weight,
            "priority": p.priority,
            "preferred": p.preferred,
        }
        for p in d.placed
    ]
    data["verdicts"] = dict(d.verdicts)
    data["latencyPercentile"] = d.latency_percentile
    return data


def decode_decision(data: Mapping[str, Any]) -> Decision:
    reason = data.get("reason", {})
    return Decision(
        service=str(data["service"]),
        strategy=str(data["strategy"]),
        placed=tuple(
            PlacedCluster(
                name=str(p["cluster"]),
                region=str(p["region"]),
                weight=int(p["weight"]),
                priority=int(p["priority"]),
                preferred=bool(p.get("preferred", True)),
            )
            for p in data.get("placed", ())
        ),
        weights={str(k): int(v) for k, v in data.get("weights", {}).items()},
        target={str(k): int(v) for k, v in data.get("target", {}).items()},
        reason=Reason(
            rule=reason.get("rule", "static"),
            summary=str(reason.get("summary", "")),
            details=tuple(reason.get("details", ())),
            thresholds=dict(reason.get("thresholds", {})),
        ),
        made_at=float(data["madeAt"]),
        since=float(data["since"]),
        changed_at=float(data["changedAt"]),
        dwell_until=float(data["dwellUntil"]),
        next_decision_at=_float_or_none(data.get("nextDecisionAt")),
        stale=bool(data.get("stale", False)),
        signals_at=_float_or_none(data.get("signalsAt")),
        breached={str(k): float(v) for k, v in data.get("breached", {}).items()},
        verdicts={str(k): str(v) for k, v in data.get("verdicts", {}).items()},
        latency_percentile=str(data.get("latencyPercentile", "p99")),
    )


def encode_canary(s: CanaryStatus) -> dict[str, Any]:
    data = s.as_dict()
    data["stableSubset"] = s.stable_subset
    data["canarySubset"] = s.canary_subset
    return data


def decode_canary(data: Mapping[str, Any], spec: CanarySpec) -> CanaryStatus | None:
    """The published status, resumable by the controller; None when ``spec`` is not the canary
    it was published for (the controller then starts it, exactly as on one replica)."""
    if (
        data.get("service") != spec.service
        or data.get("stableSubset") != spec.stable_subset
        or data.get("canarySubset") != spec.canary_subset
        or int(data.get("step", 0)) > len(spec.steps)
    ):
        return None
    return CanaryStatus(
        name=str(data["name"]),
        service=spec.service,
        stable_subset=spec.stable_subset,
        canary_subset=spec.canary_subset,
        phase=data["phase"],
        step=int(data["step"]),
        weight=int(data["weight"]),
        step_started_at=float(data["stepStartedAt"]),
        next_analysis_at=_float_or_none(data.get("nextAnalysisAt")),
        failures=int(data.get("failures", 0)),
        inconclusive=int(data.get("inconclusive", 0)),
        outcome=data.get("outcome"),
        checks=tuple(
            Check(
                metric=str(c["metric"]),
                value=_float_or_none(c.get("value")),
                threshold=float(c["threshold"]),
                ok=c.get("ok"),
                comparison=c.get("comparison", ">="),
            )
            for c in data.get("checks", ())
        ),
        why=str(data.get("why", "")),
        updated_at=float(data.get("updatedAt", 0.0)),
        events=tuple(
            Event(float(e["at"]), str(e["kind"]), str(e["message"])) for e in data.get("events", ())
        ),
        spec_key=spec_key(spec),
    )


def restore_canaries(
    specs: Mapping[str, CanarySpec], published: Mapping[str, Mapping[str, Any]]
) -> dict[str, CanaryStatus]:
    """Statuses for the model's canaries from what was published (unknown or changed: left out)."""
    out: dict[str, CanaryStatus] = {}
    for name, spec in specs.items():
        data = published.get(name)
        status = decode_canary(data, spec) if data is not None else None
        if status is not None:
            out[name] = replace(status, name=name)
    return out


def decode_decisions(data: Mapping[str, Any]) -> dict[str, Decision]:
    return {str(name): decode_decision(d) for name, d in data.items()}


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
