"""Policy model + health -> everything the DNS server needs (zones, decisions, the answer table).

Pure, in two steps with a type each: ``plan_from_model`` gives the ``GtmPlan`` (what depends on
the model alone: policies, client groups, zones, what to probe), ``decide`` turns a GtmPlan and
a HealthView into a ``DecidedPlan`` (decisions and the answer table). ``GtmConfig`` says how
Ubiq presents itself (nameserver names and glue addresses). Client groups read from GeoIP
databases (I/O, done by the caller) come in as ``geo_groups``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.zone import StaticRecord, Zone
from controlplane.gtm.from_model import client_groups, steering_policies
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.health.state import CheckedTarget, HealthCheck, checked_targets
from controlplane.gtm.reuse import reusable
from controlplane.gtm.steering import rotates, rotation_period, steer_all
from controlplane.gtm.types import ClientGroup, Decision, HealthView, Placed, SteeringPolicy
from controlplane.policy.globalservice import GtmHealthCheck
from controlplane.policy.model import Model


@dataclass(frozen=True, slots=True)
class GtmConfig:
    """How the GTM names itself in its zones: NS host label and the addresses for its glue."""

    ns_label: str = "ns1"
    ns_addresses: tuple[str, ...] = ("127.0.0.1",)
    allow_transfer: tuple[str, ...] = ()


_NO_GROUPS = ClientGroups()


@dataclass(frozen=True)
class GtmPlan:
    """What a model asks of the GTM, before health: policies, client groups, zones, probes."""

    policies: Mapping[str, SteeringPolicy]
    groups: tuple[ClientGroup, ...]
    zones: tuple[Zone, ...]
    checked: tuple[CheckedTarget, ...]
    # the lookup structure for ``groups``, built once per model (plan_from_model) and passed on
    client_groups: ClientGroups = field(default=_NO_GROUPS, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.client_groups is _NO_GROUPS and self.groups:
            object.__setattr__(self, "client_groups", ClientGroups(self.groups))

    def group_for(self, client: str) -> ClientGroup:
        """The client group a source address falls in, the way the DNS server finds it."""
        return self.client_groups.group_for(client)


@dataclass(frozen=True)
class DecidedPlan:
    """A GtmPlan decided with one HealthView: every (name, group) Decision and the table."""

    plan: GtmPlan
    zones: tuple[Zone, ...]  # the plan's zones with this table's SOA serial
    decisions: Mapping[tuple[str, str], Decision]
    table: AnswerTable
    health: HealthView  # the health it was decided with
    #: the placement's regions per (name, group) it was decided with (``gtm.reuse`` compares them)
    placed: Mapping[tuple[str, str], Placed] = field(default_factory=dict)

    @property
    def policies(self) -> Mapping[str, SteeringPolicy]:
        return self.plan.policies

    @property
    def groups(self) -> tuple[ClientGroup, ...]:
        return self.plan.groups

    @property
    def checked(self) -> tuple[CheckedTarget, ...]:
        return self.plan.checked

    @property
    def client_groups(self) -> ClientGroups:
        return self.plan.client_groups

    def group_for(self, client: str) -> ClientGroup:
        return self.plan.group_for(client)


def health_check_from_spec(spec: GtmHealthCheck) -> HealthCheck:
    """The prober's HealthCheck for a GlobalService's healthCheck (milliseconds to seconds)."""
    interval = spec.interval / 1000
    if spec.http is not None:
        http = spec.http
        return HealthCheck(
            kind=http.scheme,
            path=http.path,
            host=http.host,
            port=http.port,
            interval=interval,
            timeout=spec.timeout / 1000,
            expected_status=tuple((c, c) for c in http.expected_statuses),
            healthy_threshold=spec.healthy_threshold,
            unhealthy_threshold=spec.unhealthy_threshold,
            jitter=min(spec.jitter / spec.interval, 0.5) if spec.interval else 0.0,
            verify_tls=http.verify_tls,
        )
    return HealthCheck(
        kind="tcp",
        port=spec.tcp.port if spec.tcp else None,
        interval=interval,
        timeout=spec.timeout / 1000,
        healthy_threshold=spec.healthy_threshold,
        unhealthy_threshold=spec.unhealthy_threshold,
        jitter=min(spec.jitter / spec.interval, 0.5) if spec.interval else 0.0,
    )


def plan_from_model(
    model: Model, config: GtmConfig, geo_groups: Iterable[ClientGroup] = ()
) -> GtmPlan:
    """The parts that depend on the model only (not on health)."""
    policies = {p.name: p for p in steering_policies(model)}
    checks = {
        gs.spec.name.rstrip(".").lower(): health_check_from_spec(gs.spec.health_check)
        for gs in model.global_services.values()
        if gs.spec.health_check is not None
    }
    origins = sorted({p.zone for p in policies.values()})
    aliases: dict[str, list[StaticRecord]] = {origin: [] for origin in origins}
    for gs in model.global_services.values():
        policy = policies[gs.spec.name.rstrip(".").lower()]
        aliases[policy.zone].extend(
            StaticRecord(a.rstrip(".").lower(), "CNAME", f"{policy.name}.", policy.ttl)
            for a in gs.spec.aliases
        )
    zones = tuple(
        Zone(
            origin=origin,
            nameservers=(f"{config.ns_label}.{origin}",),
            glue={f"{config.ns_label}.{origin}": config.ns_addresses},
            records=tuple(sorted(aliases[origin], key=lambda r: r.name)),
        )
        for origin in origins
    )
    groups = client_groups(model, geo_groups)
    lookup = ClientGroups(groups)  # a network in two groups raises GtmError here, not mid-swap
    checked = checked_targets(policies.values(), checks)
    return GtmPlan(policies, groups, zones, checked, client_groups=lookup)


def decide(
    plan: GtmPlan,
    health: HealthView,
    *,
    epoch: int,
    previous: Mapping[tuple[str, str], Decision] | None = None,
    config: GtmConfig = GtmConfig(),
    serial: int | None = None,
    now: float = 0.0,
    placed: Mapping[tuple[str, str], Placed] | None = None,
    reuse: DecidedPlan | None = None,
) -> DecidedPlan:
    """Steer every name for every group and precompute the answer table.

    ``reuse``: the plan being served, when ``previous`` is its decisions; the names whose
    inputs did not change keep their decisions (``gtm.reuse``) and the table rebuilds only the
    names whose decisions changed (``AnswerTable.build(previous=...)``).

    ``serial`` is the zones' SOA serial (the caller keeps it increasing, RFC 1982); the answers
    change with health, so secondaries that transfer the zone need it to move too. ``now``
    (seconds) picks the rotation slot of roundRobin and non-sticky weighted policies.
    ``placed``: per (name, group), the regions the service's placement Decision allows
    (``controlplane.gtm.placed``)."""
    keep: set[str] = set()
    placed = placed or {}
    if reuse is not None and previous is reuse.decisions:
        keep = reusable(
            plan.policies,
            tuple(g.name for g in plan.groups),
            health,
            placed,
            reuse.policies,
            tuple(g.name for g in reuse.groups),
            reuse.health,
            reuse.placed,
            reuse.decisions,
        )
    policies = [p for p in plan.policies.values() if p.name not in keep]
    decisions = steer_all(policies, plan.groups, health, epoch, previous, now, placed)
    if keep and reuse is not None:
        decisions.update((k, d) for k, d in reuse.decisions.items() if k[0] in keep)
    zones = plan.zones
    if serial is not None:
        zones = tuple(replace(z, serial=serial % 2**32 or 1) for z in zones)
    table = AnswerTable.build(
        zones,
        decisions.values(),
        plan.client_groups,
        plan.policies.values(),
        generation=epoch,
        allow_transfer=tuple(ipaddress.ip_network(n, strict=False) for n in config.allow_transfer),
        previous=reuse.table if reuse is not None else None,
    )
    return DecidedPlan(plan, zones, MappingProxyType(decisions), table, health, placed)


def next_rotation(plan: GtmPlan, now: float) -> float | None:
    """Seconds from ``now`` until some policy's rotation slot changes; None when no policy
    rotates (then only model and health changes move the answers)."""
    periods = {rotation_period(p) for p in plan.policies.values() if rotates(p)}
    if not periods:
        return None
    return min(p - now % p for p in periods)


def next_dwell_expiry(plan: DecidedPlan) -> float | None:
    """The earliest time (seconds, the clock ``decide`` was given) at which a minimum dwell that
    holds an answer ends (the placement's dwell for a client group, carried in through
    ``placed``); None when no answer is held. The answer may move then, with no model or health
    change to trigger a rebuild, so the runtime must decide again at that time."""
    ends = [d.dwell_until for d in plan.decisions.values() if d.dwell_until is not None]
    return min(ends) if ends else None
