"""What would client X get for NAME, and why: a Decision and its inputs, for people and the API.

Pure: the caller resolves the client address to a group and gets the Decision (from the live
table, or by calling ``steer``); this module only lays the facts side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.gtm.dns.zone import Zone
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.steering import rotation_at, steer, target_label
from controlplane.gtm.types import ClientGroup, Decision, HealthView, Placed, SteeringPolicy

__all__ = [
    "Explanation",
    "explain",
    "explain_client",
    "explain_dict",
    "explain_text",
    "served_name",
]


@dataclass(frozen=True, slots=True)
class Explanation:
    group: ClientGroup
    decision: Decision
    text: str
    data: dict[str, Any]


def served_name(
    policies: Mapping[str, SteeringPolicy], zones: Iterable[Zone], name: str
) -> tuple[str, str | None] | None:
    """(the GlobalService name that answers ``name``, the alias typed or None), following the
    zones' CNAME records as the DNS server does; None when nothing here answers ``name``."""
    wanted = name.rstrip(".").lower()
    if wanted in policies:
        return wanted, None
    for zone in zones:
        for record in zone.records:
            if record.rtype == "CNAME" and record.name.rstrip(".").lower() == wanted:
                target = record.rdata.rstrip(".").lower()
                if target in policies:
                    return target, wanted
    return None


def explain_client(
    policy: SteeringPolicy,
    groups: ClientGroups,
    health: HealthView,
    client: str,
    *,
    epoch: int = 0,
    previous: Decision | None = None,
    now: float = 0.0,
    placed: Mapping[tuple[str, str], Placed] | None = None,
) -> Explanation:
    """Everything ``ubiq dns explain NAME --client ADDR`` prints: the client's group is found the
    way the DNS server finds it (longest prefix, else the default group), then steered afresh
    (``now``, seconds, as in ``steer_all``: rotation slot), within what the placement Decision
    allows the group (``placed``, as the planner builds it) when given."""
    group = groups.group_for(client)
    decision = steer(
        policy,
        group,
        health,
        epoch=epoch,
        previous=previous,
        rotation=rotation_at(policy, now),
        now=now,
        placed=(placed or {}).get((policy.name, group.name)),
    )
    return Explanation(
        group=group,
        decision=decision,
        text=explain(policy, group, health, decision, client=client, now=now),
        data=explain_dict(policy, group, health, decision, client=client, now=now),
    )


def explain_dict(
    policy: SteeringPolicy,
    group: ClientGroup,
    health: HealthView,
    decision: Decision,
    *,
    client: str | None = None,
    alias: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The structured form (JSON-ready: only str, int, float, bool, None, lists and dicts).

    ``now`` (seconds, the clock the decision was made with) dates the answer against the
    present: ``answered_for_s`` and ``dwell_ends_in_s``; None leaves them out (null)."""
    latency_row = policy.latency.get(group.name, {})
    answered = set(decision.addresses)
    targets = []
    for t in policy.targets:
        key = (t.cluster, t.address, t.port)
        targets.append(
            {
                "label": target_label(policy, t),
                "cluster": t.cluster,
                "region": t.region,
                "address": t.address,
                "port": t.port,
                "weight": t.weight,
                "tier": t.tier,
                "healthy": health.is_healthy(t),
                "checked": key in health.known,
                "detail": health.detail.get(key),
                "latency_ms": latency_row.get(t.region),
                "answered": t.address in answered,
            }
        )
    return {
        "name": policy.name,
        "alias": alias,  # the name asked for when it is a CNAME to ``name``
        "client": client,
        "group": {
            "name": group.name,
            "region": group.region,
            "networks": [str(n) for n in group.networks],
            "geo_preference": list(policy.geo.get(group.name, ())),
        },
        "policy": {
            "strategy": policy.strategy,
            "ttl": policy.ttl,
            "max_answers": policy.max_answers,
            "all_down": policy.all_down,
            "fallback": list(policy.fallback),
            "sticky": policy.sticky,
            "service": policy.service,
        },
        "answer": {
            "addresses": list(decision.addresses),
            "regions": list(decision.regions),
            "servfail": decision.servfail,
            "all_down": decision.all_down,
            "depends_on_client": decision.depends_on_client,
            "epoch": decision.epoch,
            "since_epoch": decision.since_epoch,
            "since": decision.since,
            "answered_for_s": None if now is None else max(0.0, now - decision.since),
            "dwell_until": decision.dwell_until,
            "dwell_ends_in_s": (
                None
                if now is None or decision.dwell_until is None
                else max(0.0, decision.dwell_until - now)
            ),
        },
        "reasons": list(decision.reasons),
        "targets": targets,
    }


def explain(
    policy: SteeringPolicy,
    group: ClientGroup,
    health: HealthView,
    decision: Decision,
    *,
    client: str | None = None,
    now: float | None = None,
) -> str:
    """Multi-line human text: the answer first, then why, then every target's state."""
    return explain_text(explain_dict(policy, group, health, decision, client=client, now=now))


def explain_text(data: Mapping[str, Any]) -> str:
    """The text of ``explain`` from the structured form (as the API returns it)."""
    group, policy, answer = data["group"], data["policy"], data["answer"]
    client = data.get("client")
    who = f"client {client} " if client else ""
    region = f", region {group['region']}" if group["region"] else ""
    lines = []
    if data.get("alias"):
        lines.append(f"{data['alias']} is an alias (CNAME) of {data['name']}")
    lines.append(f"{data['name']} for {who}(group {group['name']}{region})")
    lines.append(
        f"strategy {policy['strategy']}, ttl {policy['ttl']}s, up to {policy['max_answers']}"
        f" answer(s) per address family, all down -> {policy['all_down']}"
    )
    if answer["servfail"]:
        text = "SERVFAIL"
    else:
        text = ", ".join(answer["addresses"])
        if answer["regions"]:
            text += f" ({', '.join(answer['regions'])})"
    scope = "per client group" if answer["depends_on_client"] else "same for every client (scope 0)"
    lines.append(f"answer: {text}")
    lines.append(
        f"ECS scope: {scope}; epoch {answer['epoch']}, since epoch {answer['since_epoch']}"
    )
    if answer.get("answered_for_s") is not None:
        elapsed = f"answered for {answer['answered_for_s']:.1f}s now"
        if answer.get("dwell_ends_in_s") is not None:
            elapsed += f"; minimum dwell ends in {answer['dwell_ends_in_s']:.1f}s"
        lines.append(elapsed)
    lines.append("why:")
    lines.extend(f"  - {r}" for r in data["reasons"])
    lines.append("targets:")
    rows = []
    for t in data["targets"]:
        state = "healthy" if t["healthy"] else "UNHEALTHY"
        if not t["checked"]:
            state += " (not checked)"
        elif t["detail"]:
            state += f" ({t['detail']})"
        latency = "" if t["latency_ms"] is None else f"{t['latency_ms']:g}ms"
        rows.append(
            (
                "*" if t["answered"] else " ",
                t["label"],
                f"{t['address']}:{t['port']}",
                f"tier {t['tier']}",
                f"weight {t['weight']}",
                latency,
                state,
            )
        )
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(7)]
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)
