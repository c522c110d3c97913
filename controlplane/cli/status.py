"""``ubiq status``: what a running ``ubiq serve`` holds: policy, proxies in sync or not, GTM."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Any

from controlplane.cli.api_client import get_json, target
from controlplane.cli.output import emit

EXIT_REJECTED = 5  # the server runs, but refused the last policy change
TYPES = ("CDS", "EDS", "LDS", "RDS")


def cmd_status(args: argparse.Namespace) -> int:
    api = target(args)
    status = get_json(api, "/v1/status")
    replica = get_json(api, "/v1/placement").get("replica")
    if replica:
        status = {**status, "replica": replica}
    emit(status, args.format, lambda: status_text(status, now=time.time()))
    return 0 if status["policy"]["ok"] else EXIT_REJECTED


def status_text(status: Mapping[str, Any], *, now: float) -> str:
    policy = status["policy"]
    state = "ok" if policy["ok"] else f"REJECTED last change ({policy['rejected']} rejected)"
    lines = [f"policy  {policy['modelHash'][:16]}  generation {policy['generation']}  {state}"]
    lines += [f"  {problem}" for problem in policy["problems"][:10]]
    proxies = status["proxies"]
    lines.append(f"proxies {len(proxies)}")
    if proxies:
        lines.extend(_proxy_table(proxies, now))
    if status.get("replica"):
        lines.append(replica_line(status["replica"]))
    lines.append(f"gtm targets {len(status['gtm'])}")
    for t in status["gtm"]:
        health = {True: "healthy", False: "UNHEALTHY", None: "unchecked"}[t["healthy"]]
        error = f"  ({t['lastError']})" if t["lastError"] and t["healthy"] is False else ""
        lines.append(f"  {t['cluster']:12} {t['address']}:{t['port']:<6} {health}{error}")
    return "\n".join(lines)


def replica_line(replica: Mapping[str, Any]) -> str:
    """Who runs the feedback loop among the replicas sharing the store."""
    leader = replica.get("leader") or "none (an election is under way)"
    return f"replica {replica.get('name')}  {replica.get('role')}  leader {leader}"


def _proxy_table(proxies: list[Mapping[str, Any]], now: float) -> list[str]:
    header = ("NODE", "CLUSTER", "LOCALITY", "MODE", "UP", *TYPES)
    rows: list[tuple[str, ...]] = []
    notes: dict[int, list[str]] = {}
    for p in proxies:
        sync = p.get("sync", {})
        rows.append(
            (
                p["nodeId"],
                p["cluster"],
                p["locality"] or "-",
                p["mode"],
                f"{now - p['connectedSince']:.0f}s",
                *(sync.get(t, "-") for t in TYPES),
            )
        )
        lines = []
        if p.get("problem"):
            lines.append(f"    {p['problem']}")
        nack = p["lastNack"]
        if nack:
            lines.append(f"    last NACK ({_short(nack['typeUrl'])}): {nack['message']}")
        notes[len(rows) - 1] = lines
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    out = ["  " + "  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    for i, row in enumerate(rows):
        out.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        out.extend(notes[i])
    return out


def _short(type_url: str) -> str:
    from controlplane.xds.resources import short_name

    return short_name(type_url)
