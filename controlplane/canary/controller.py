"""The canary state machine: one ``CanaryStatus`` per ``Canary``, advanced by ``advance``.

Pure: the clock is ``now`` (seconds), signals come in as ``Signals`` keyed by subset.

    progressing --pass at the last step--> promoted (canary 100 %)
    progressing --failureLimit fails--> rolledBack (stable 100 %)   [onFailure: rollback]
                                   \\-> paused (weight held)        [onFailure: pause]
    progressing --pause--> paused --resume--> progressing
    any live phase --abort--> aborted (stable 100 %)

At each ``interval`` the canary subset is analysed: pass moves to the next step; fail counts toward
``failureLimit`` and holds the step; inconclusive (too few requests, stale or missing data) holds
the step and starts the interval again, without counting as a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from controlplane.canary.analysis import Check, Outcome, analyse
from controlplane.feedback.signals import Signals
from controlplane.policy.canary import CanarySpec

__all__ = ["CanaryStatus", "Event", "Phase", "abort", "advance", "pause", "resume"]

Phase = Literal["progressing", "paused", "promoted", "rolledBack", "aborted"]
FINAL: frozenset[str] = frozenset({"promoted", "rolledBack", "aborted"})
MAX_EVENTS = 200


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    kind: str  # started, analysis.pass, analysis.fail, analysis.inconclusive, step, promoted, ...
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, "message": self.message}


@dataclass(frozen=True, slots=True)
class CanaryStatus:
    name: str
    service: str
    stable_subset: str
    canary_subset: str
    phase: Phase
    step: int  # index into spec.steps; len(steps) once promoted
    weight: int  # percent of the rule's traffic on the canary subset
    step_started_at: float  # the current interval started then
    next_analysis_at: float | None
    failures: int  # failed analyses at this step (reset by a pass)
    inconclusive: int  # inconclusive analyses at this step
    outcome: Outcome | None  # the last analysis
    checks: tuple[Check, ...]
    why: str
    updated_at: float
    events: tuple[Event, ...] = ()
    spec_key: tuple[object, ...] = ()

    @property
    def stable_weight(self) -> int:
        return 100 - self.weight

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "service": self.service,
            "phase": self.phase,
            "step": self.step,
            "weight": self.weight,
            "stableWeight": self.stable_weight,
            "stepStartedAt": self.step_started_at,
            "nextAnalysisAt": self.next_analysis_at,
            "failures": self.failures,
            "inconclusive": self.inconclusive,
            "outcome": self.outcome,
            "checks": [c.as_dict() for c in self.checks],
            "why": self.why,
            "updatedAt": self.updated_at,
            "events": [e.as_dict() for e in self.events],
        }


def _key(spec: CanarySpec) -> tuple[object, ...]:
    return (spec.service, spec.route_policy, spec.stable_subset, spec.canary_subset, spec.steps)


def spec_key(spec: CanarySpec) -> tuple[object, ...]:
    """What a status must match to continue under ``spec`` (a changed canary starts again)."""
    return _key(spec)


def start(name: str, spec: CanarySpec, now: float) -> CanaryStatus:
    weight = spec.steps[0]
    return CanaryStatus(
        name=name,
        service=spec.service,
        stable_subset=spec.stable_subset,
        canary_subset=spec.canary_subset,
        phase="progressing",
        step=0,
        weight=weight,
        step_started_at=now,
        next_analysis_at=now + spec.interval / 1000.0,
        failures=0,
        inconclusive=0,
        outcome=None,
        checks=(),
        why=f"step 1 of {len(spec.steps)}: canary at {weight}%",
        updated_at=now,
        events=(Event(now, "started", f"canary {spec.canary_subset} at {weight}%"),),
        spec_key=_key(spec),
    )


def _log(status: CanaryStatus, now: float, kind: str, message: str, **changes: Any) -> CanaryStatus:
    events = (*status.events, Event(now, kind, message))[-MAX_EVENTS:]
    return replace(status, events=events, updated_at=now, **changes)


def advance(
    name: str, spec: CanarySpec, status: CanaryStatus | None, signals: Signals | None, now: float
) -> CanaryStatus:
    """The canary's status at ``now``: analyse once per interval, step, promote or roll back."""
    if status is None or status.spec_key != _key(spec):
        return start(name, spec, now)
    if status.phase in FINAL or status.phase == "paused":
        return status
    interval = spec.interval / 1000.0
    due = status.step_started_at + interval
    if now < due:
        return replace(status, next_analysis_at=due, updated_at=now)
    if signals is None or signals.stale:
        why = "signals are stale: holding the step" if signals else "no signals: holding the step"
        return _log(
            status,
            now,
            "analysis.inconclusive",
            why,
            outcome="inconclusive",
            why=why,
            step_started_at=now,
            next_analysis_at=now + interval,
            inconclusive=status.inconclusive + 1,
            checks=(),
        )
    result = analyse(spec, signals)
    at_step = f"step {status.step + 1} ({status.weight}%)"
    if result.outcome == "inconclusive":
        return _log(
            status,
            now,
            "analysis.inconclusive",
            f"{at_step}: {result.why}; holding the step",
            outcome="inconclusive",
            checks=result.checks,
            why=f"inconclusive: {result.why}",
            step_started_at=now,
            next_analysis_at=now + interval,
            inconclusive=status.inconclusive + 1,
        )
    if result.outcome == "fail":
        failures = status.failures + 1
        failed = _log(
            status,
            now,
            "analysis.fail",
            f"{at_step}: {result.why} ({failures} of failureLimit {spec.analysis.failure_limit})",
            outcome="fail",
            checks=result.checks,
            failures=failures,
            why=f"failed: {result.why}",
            step_started_at=now,
            next_analysis_at=now + interval,
        )
        if failures < spec.analysis.failure_limit:
            return failed
        if spec.on_failure == "rollback":
            return _log(
                failed,
                now,
                "rolledBack",
                f"rolled back: stable {spec.stable_subset} at 100%",
                phase="rolledBack",
                weight=0,
                next_analysis_at=None,
                why=f"rolled back after {failures} failed analysis(es): {result.why}",
            )
        return _log(
            failed,
            now,
            "paused",
            f"paused at {status.weight}% (onFailure: pause)",
            phase="paused",
            next_analysis_at=None,
            why=f"paused after {failures} failed analysis(es): {result.why}",
        )
    passed = _log(
        status,
        now,
        "analysis.pass",
        f"{at_step}: every check passed",
        outcome="pass",
        checks=result.checks,
        failures=0,
        inconclusive=0,
    )
    nxt = status.step + 1
    if nxt >= len(spec.steps) or status.weight >= 100:
        return _log(
            passed,
            now,
            "promoted",
            f"promoted: canary {spec.canary_subset} at 100%",
            phase="promoted",
            step=len(spec.steps),
            weight=100,
            next_analysis_at=None,
            why=f"promoted after {len(spec.steps)} step(s)",
        )
    weight = spec.steps[nxt]
    return _log(
        passed,
        now,
        "step",
        f"step {nxt + 1} of {len(spec.steps)}: canary at {weight}%",
        step=nxt,
        weight=weight,
        step_started_at=now,
        next_analysis_at=now + interval,
        why=f"step {nxt + 1} of {len(spec.steps)}: canary at {weight}%",
    )


class CommandError(ValueError):
    """A command that does not apply to the canary's phase (one line for the CLI/API)."""


def pause(status: CanaryStatus, now: float, by: str = "operator") -> CanaryStatus:
    if status.phase != "progressing":
        raise CommandError(
            f"canary {status.name} is {status.phase}; only a progressing canary pauses"
        )
    return _log(
        status,
        now,
        "paused",
        f"paused by {by} at {status.weight}%",
        phase="paused",
        next_analysis_at=None,
        why=f"paused by {by}",
    )


def resume(
    status: CanaryStatus, spec: CanarySpec, now: float, by: str = "operator"
) -> CanaryStatus:
    if status.phase != "paused":
        raise CommandError(f"canary {status.name} is {status.phase}; only a paused canary resumes")
    interval = spec.interval / 1000.0
    return _log(
        status,
        now,
        "resumed",
        f"resumed by {by} at {status.weight}%",
        phase="progressing",
        step_started_at=now,
        next_analysis_at=now + interval,
        failures=0,
        why=f"resumed by {by}: step {status.step + 1} at {status.weight}%",
    )


def abort(status: CanaryStatus, now: float, by: str = "operator") -> CanaryStatus:
    if status.phase in FINAL:
        raise CommandError(f"canary {status.name} is already {status.phase}")
    return _log(
        status,
        now,
        "aborted",
        f"aborted by {by}: stable {status.stable_subset} at 100%",
        phase="aborted",
        weight=0,
        next_analysis_at=None,
        why=f"aborted by {by}",
    )


def advance_all(
    specs: Mapping[str, CanarySpec],
    statuses: Mapping[str, CanaryStatus],
    signals: Signals | None,
    now: float,
) -> dict[str, CanaryStatus]:
    """Every canary of the model advanced to ``now`` (statuses of removed canaries are dropped)."""
    return {n: advance(n, spec, statuses.get(n), signals, now) for n, spec in specs.items()}
