"""What the feedback loop hands to placement and the canary controller: measured signals.

``None`` always means "no data" (no series, no requests, a division by zero), never 0 % or 100 %.
Pure data; produced by the Prometheus poller in this package, read by ``controlplane.placement``
and ``controlplane.canary``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, order=True)
class SignalKey:
    """One service (optionally one subset of it) as served from one region."""

    service: str
    region: str
    subset: str = ""  # "" = the whole service, all subsets


@dataclass(frozen=True, slots=True)
class RegionSignal:
    """Request fields (rate .. requests) count what the region's endpoints answered, whichever
    Envoy sent the request; the proxy fields after them are what the Envoys *in* the region report
    for the service (docs/placement.md "Signals")."""

    request_rate: float | None = None  # requests per second over the query window
    success_rate: float | None = None  # 0..1, non-5xx share of completed requests
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_p99_ms: float | None = None
    requests: float | None = None  # completed requests in the window (minimum-volume checks)
    active_connections: float | None = None
    circuit_breaker_overflows: float | None = None  # per second
    outlier_ejections: float | None = None  # per second
    healthy_endpoint_share: float | None = None  # 0..1


@dataclass(frozen=True, slots=True)
class Signals:
    """One poll's result. ``stale`` when the source could not be read: hold decisions."""

    at: float  # wall-clock seconds when measured
    values: Mapping[SignalKey, RegionSignal] = field(default_factory=dict)
    stale: bool = False
    error: str | None = None
    # measured latency (ms) from a client group (GTM group name) to a region
    client_latency_ms: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def get(self, service: str, region: str, subset: str = "") -> RegionSignal | None:
        return self.values.get(SignalKey(service, region, subset))
