"""Health-check configuration and the threshold state machine (counts -> state). Pure.

A target starts *undecided* (``healthy is None``): it is not in ``HealthView.known`` and so
counts as healthy, exactly like a target without a health check. It becomes healthy after
``healthy_threshold`` consecutive successes and unhealthy after ``unhealthy_threshold``
consecutive failures, from any state; one result of the other kind resets the other count.
``last_change`` moves only when ``healthy`` changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from controlplane.errors import GtmError
from controlplane.gtm.types import HealthView, SteeringPolicy, Target

__all__ = [
    "CheckedTarget",
    "HealthCheck",
    "ProbeKind",
    "ProbeResult",
    "TargetHealth",
    "TargetKey",
    "checked_targets",
    "health_view",
    "observe",
]

ProbeKind = Literal["http", "https", "tcp"]
TargetKey = tuple[str, str, int]  # (cluster, address, port), as in HealthView


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How to probe one target; times in seconds."""

    kind: ProbeKind = "http"
    path: str = "/"
    host: str | None = None  # Host header and TLS server name; default: the address
    port: int | None = None  # default: the target's port
    interval: float = 1.0
    timeout: float = 1.0
    expected_status: tuple[tuple[int, int], ...] = ((200, 399),)  # inclusive ranges
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    jitter: float = 0.1  # each wait is interval x (1 +- jitter), drawn from the checker's RNG
    verify_tls: bool = True
    ca_file: str | None = None  # trust this CA bundle instead of the system's

    def __post_init__(self) -> None:
        problems = []
        if self.interval <= 0:
            problems.append(f"interval must be > 0, got {self.interval}")
        if self.timeout <= 0:
            problems.append(f"timeout must be > 0, got {self.timeout}")
        if self.healthy_threshold < 1:
            problems.append(f"healthyThreshold must be >= 1, got {self.healthy_threshold}")
        if self.unhealthy_threshold < 1:
            problems.append(f"unhealthyThreshold must be >= 1, got {self.unhealthy_threshold}")
        if not 0 <= self.jitter < 1:
            problems.append(f"jitter must be in [0, 1), got {self.jitter}")
        if not self.path.startswith("/"):
            problems.append(f"path must start with '/', got {self.path!r}")
        if not self.expected_status or any(lo > hi for lo, hi in self.expected_status):
            problems.append(f"expected status ranges are empty or inverted: {self.expected_status}")
        if problems:
            raise GtmError("health check: " + "; ".join(problems))

    def status_ok(self, status: int) -> bool:
        return any(lo <= status <= hi for lo, hi in self.expected_status)


@dataclass(frozen=True, slots=True)
class CheckedTarget:
    target: Target
    check: HealthCheck

    @property
    def key(self) -> TargetKey:
        return (self.target.cluster, self.target.address, self.target.port)

    @property
    def probe_port(self) -> int:
        return self.check.port if self.check.port is not None else self.target.port


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    error: str | None = None  # "connection refused", "timeout after 1s", "status 503"...
    status: int | None = None  # HTTP status, when one was read
    latency: float = 0.0  # seconds


@dataclass(frozen=True, slots=True)
class TargetHealth:
    healthy: bool | None = None  # None: undecided (counts as healthy)
    successes: int = 0  # consecutive
    failures: int = 0  # consecutive
    last_error: str | None = None
    last_change: float | None = None
    last_probe: float | None = None
    probes: int = 0

    @property
    def detail(self) -> str:
        """Why the target is unhealthy, for Decision reasons."""
        plural = "" if self.failures == 1 else "s"
        base = f"{self.failures} failed probe{plural}"
        return f"{base}: {self.last_error}" if self.last_error else base


def observe(
    state: TargetHealth, ok: bool, error: str | None, now: float, check: HealthCheck
) -> TargetHealth:
    """The state after one probe result."""
    if ok:
        successes, failures = state.successes + 1, 0
        healthy = True if successes >= check.healthy_threshold else state.healthy
    else:
        successes, failures = 0, state.failures + 1
        healthy = False if failures >= check.unhealthy_threshold else state.healthy
    changed = healthy != state.healthy
    return replace(
        state,
        healthy=healthy,
        successes=successes,
        failures=failures,
        last_error=state.last_error if ok else error,
        last_change=now if changed else state.last_change,
        last_probe=now,
        probes=state.probes + 1,
    )


def health_view(states: Mapping[TargetKey, TargetHealth]) -> HealthView:
    healthy = frozenset(k for k, s in states.items() if s.healthy is True)
    known = frozenset(k for k, s in states.items() if s.healthy is not None)
    detail = {k: s.detail for k, s in states.items() if s.healthy is False}
    return HealthView(healthy, known, detail)


def checked_targets(
    policies: Iterable[SteeringPolicy], checks: Mapping[str, HealthCheck]
) -> tuple[CheckedTarget, ...]:
    """The targets to probe: every target of every policy with a check (``checks`` by name).

    A target shared by several names (one gateway serving many) is probed once, with the check
    of the first name that lists it, so its state is the same for all of them.
    """
    out: dict[TargetKey, CheckedTarget] = {}
    for policy in policies:
        check = checks.get(policy.name)
        if check is None:
            continue
        for target in policy.targets:
            ct = CheckedTarget(target, check)
            out.setdefault(ct.key, ct)
    return tuple(out.values())
