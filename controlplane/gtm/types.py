"""Values shared by the GTM's parts: steering (pure), health checks (I/O), and the DNS answer table.

Steering turns a ``SteeringPolicy`` plus the current ``HealthView`` into one ``Decision`` per
(name, client group). The answer table turns decisions into precomputed DNS wire answers. The
DNS server maps a query's client address (EDNS Client Subnet, else the source address) to a
client group with ``ClientGroups.lookup`` and serves the precomputed bytes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

Strategy = Literal["failover", "weighted", "geo", "lowestLatency", "roundRobin"]
AllDown = Literal["answerAll", "fallback", "servfail"]

DEFAULT_GROUP = "default"


@dataclass(frozen=True, slots=True)
class Target:
    """One regional answer candidate for a global name (usually a cluster's gateway)."""

    cluster: str
    region: str
    address: str  # IPv4 or IPv6 literal
    port: int
    weight: int = 1
    tier: int = 0  # failover: lower tiers are preferred


@dataclass(frozen=True, slots=True)
class ClientGroup:
    """A set of client networks that get the same answers (e.g. "clients in eu-west")."""

    name: str
    networks: tuple[IPNetwork, ...]
    region: str | None = None  # the region these clients are in, when known (geo steering)


@dataclass(frozen=True, slots=True)
class SteeringPolicy:
    """Everything steering needs for one global name, taken from a GlobalService document."""

    name: str  # FQDN, lower case, no trailing dot
    zone: str
    strategy: Strategy
    targets: tuple[Target, ...]
    ttl: int
    max_answers: int = 1
    all_down: AllDown = "answerAll"
    fallback: tuple[str, ...] = ()
    # lowestLatency: client group -> region -> milliseconds
    latency: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # geo: client group -> ordered regions to prefer
    geo: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sticky: bool = True
    service: str = ""  # the Service the name steers to (its placement Decision, if any)


@dataclass(frozen=True, slots=True)
class Placed:
    """What the placement Decision lets one (name, client group) be answered with.

    Built from ``controlplane.placement.groups.GroupChoice``: the regions the Decision serves
    the service from, best first for this group (``regions``), then the Decision's other serving
    regions (``fallback``). Steering answers only targets in these regions (while any of them
    has a healthy target); all damping happened in placement, so steering adds none.
    """

    regions: tuple[str, ...]
    fallback: tuple[str, ...] = ()
    rule: str = ""  # the group choice's rule (``hold.dwell``, ``lowestLatency``, ``leave``, ...)
    reasons: tuple[str, ...] = ()  # why, as the placement engine wrote it
    dwell_until: float | None = None  # a minimum dwell holds the answer until then
    since: float | None = None  # the group has been answered these regions since


@dataclass(frozen=True, slots=True)
class HealthView:
    """Which targets are healthy right now, keyed by (cluster, address, port)."""

    healthy: frozenset[tuple[str, str, int]]
    known: frozenset[tuple[str, str, int]] = frozenset()
    # why a target is unhealthy, for reasons and explanations ("3 failed probes: timeout")
    detail: Mapping[tuple[str, str, int], str] = field(
        default_factory=dict, compare=False, hash=False
    )

    def is_healthy(self, target: Target) -> bool:
        key = (target.cluster, target.address, target.port)
        # A target nobody has checked yet counts as healthy (no health check configured).
        return key in self.healthy or key not in self.known


@dataclass(frozen=True, slots=True)
class Decision:
    """Ordered answers for one name and one client group, with the reasons that produced them."""

    name: str
    group: str
    addresses: tuple[str, ...]
    servfail: bool = False
    depends_on_client: bool = True  # False → ECS scope 0
    reasons: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()  # regions of the answered targets, in answer order
    all_down: bool = False  # no target was healthy: the all-down behaviour produced the answer
    epoch: int = field(default=0, compare=False)
    since_epoch: int = field(default=0, compare=False)  # first epoch this region was answered
    since: float = field(default=0.0, compare=False)  # ``now`` (seconds) when it was first answered
    # when a minimum dwell (placement's, for this group) holds this answer against a better
    # region, the time (seconds, same clock as ``since``) it ends; the runtime decides again then
    dwell_until: float | None = field(default=None, compare=False)
