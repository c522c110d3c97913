"""What a policy change would do, before it is made: documents, xDS resources per node group,
DNS answers per client group. Pure: the same compiler and GTM planner the server runs.

xDS: every group is compiled from both models and the resources compared by content version.
DNS: both models are planned and decided with the health the server sees now (GeoIP client
groups and the feedback loop's placement decisions are left out: CIDR groups and static
placement only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.api.models import DnsChange, DocumentChange, PolicyDiff, XdsChange
from controlplane.gtm.plan import GtmConfig, decide, plan_from_model
from controlplane.gtm.types import HealthView
from controlplane.policy.diff import diff
from controlplane.policy.model import KIND_ORDER, Model
from controlplane.xds.compiler.options import CompileOptions
from controlplane.xds.resources import ORDER, short_name
from controlplane.xds.runtime import build_groups


@dataclass(frozen=True, slots=True)
class DiffContext:
    """How the running server compiles and plans (its options and the health it sees)."""

    options: CompileOptions = field(default_factory=CompileOptions)
    gtm: GtmConfig | None = None  # None: the GTM is off
    health: HealthView = field(default_factory=lambda: HealthView(frozenset()))
    now: float = 0.0


def _order(key: tuple[str, str]) -> tuple[int, str]:
    return (KIND_ORDER.index(key[0]) if key[0] in KIND_ORDER else len(KIND_ORDER), key[1])


def document_changes(old: Model, new: Model) -> list[DocumentChange]:
    changes = diff(old, new)
    out = [
        DocumentChange(kind=k, name=n, change=what)
        for what, keys in (
            ("added", changes.added),
            ("changed", changes.changed),
            ("removed", changes.removed),
        )
        for k, n in keys
    ]
    return sorted(out, key=lambda c: _order((c.kind, c.name)))


def xds_changes(old: Model, new: Model, options: CompileOptions) -> list[XdsChange]:
    """Per node group and xDS type: resource names added, changed (new content) and removed."""
    before, after = build_groups(old, options), build_groups(new, options)
    out: list[XdsChange] = []
    for group in sorted(before.keys() | after.keys()):
        old_snap = before[group].snapshot if group in before else None
        new_snap = after[group].snapshot if group in after else None
        for type_url in ORDER:
            was = (
                {n: e.version for n, e in old_snap.get(type_url).entries.items()}
                if old_snap
                else {}
            )
            now = (
                {n: e.version for n, e in new_snap.get(type_url).entries.items()}
                if new_snap
                else {}
            )
            change = XdsChange(
                group=group,
                type=short_name(type_url),
                added=sorted(now.keys() - was.keys()),
                removed=sorted(was.keys() - now.keys()),
                changed=sorted(n for n in now.keys() & was.keys() if now[n] != was[n]),
            )
            if change.added or change.removed or change.changed:
                out.append(change)
    return out


def dns_changes(
    old: Model, new: Model, config: GtmConfig, health: HealthView, now: float
) -> list[DnsChange]:
    """GTM names whose answer to a client group differs (a name only in one model: [] there)."""

    def answers(model: Model) -> dict[tuple[str, str], tuple[str, ...]]:
        plan = decide(plan_from_model(model, config), health, epoch=1, config=config, now=now)
        return {key: d.addresses for key, d in plan.decisions.items()}

    was, will = answers(old), answers(new)
    return [
        DnsChange(
            name=name,
            client_group=group,
            before=list(was.get(key, ())),
            after=list(will.get(key, ())),
        )
        for key in sorted(was.keys() | will.keys())
        for name, group in (key,)
        if was.get(key) != will.get(key)
    ]


def policy_diff(old: Model, new: Model, context: DiffContext) -> PolicyDiff:
    return PolicyDiff(
        documents=document_changes(old, new),
        xds=xds_changes(old, new, context.options),
        dns=[]
        if context.gtm is None
        else dns_changes(old, new, context.gtm, context.health, context.now),
    )
