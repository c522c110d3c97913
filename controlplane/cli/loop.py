"""``ubiq placement`` and ``ubiq canary``: the feedback loop of a running server, over its API."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from controlplane.cli.api_client import get_json, post_json, target
from controlplane.cli.output import emit
from controlplane.cli.status import replica_line
from controlplane.errors import UbiqError


def cmd_placement(args: argparse.Namespace) -> int:
    path = f"/v1/placement/{args.service}" if args.service else "/v1/placement"
    data = get_json(target(args), path)
    emit(data, args.format, lambda: placement_text(data, one=bool(args.service)))
    return 0


def placement_text(data: Mapping[str, Any], *, one: bool) -> str:
    if one:
        return _decision_text(data)
    signals = data.get("signals") or {}
    head = "signals: none yet"
    if data.get("loop") == "static":
        head = "signals: none (no --prometheus): decided from the model and health"
    if signals:
        state = f"STALE ({signals.get('error')})" if signals.get("stale") else "fresh"
        head = f"signals: {state}, {signals.get('series', 0)} series"
    decisions = data.get("decisions") or {}
    if data.get("replica"):
        head += "\n" + replica_line(data["replica"])
    lines = [head, *(_decision_text(d).rstrip("\n") for d in decisions.values())]
    if not decisions:
        lines.append(
            "no decided service"
            " (a Placement that a GlobalService names, or with an slo or a metric strategy)"
        )
    return "\n".join(lines) + "\n"


def _decision_text(d: Mapping[str, Any]) -> str:
    weights = ", ".join(f"{r} {w}%" for r, w in sorted(d.get("weights", {}).items())) or "none"
    reason = d.get("reason", {})
    lines = [f"{d.get('service')} ({d.get('strategy')}): {weights}"]
    lines.append(f"  why: {reason.get('rule')}: {reason.get('summary')}")
    for region in d.get("regions", []):
        ok = region.get("successRate")
        latency = region.get("latencyMs")
        lines.append(
            f"  {region.get('region')}: {region.get('verdict')}, weight {region.get('weight')}"
            f", success {'-' if ok is None else f'{ok:.3f}'}"
            f", latency {'-' if latency is None else f'{latency:.0f}ms'}"
        )
    return "\n".join(lines) + "\n"


def cmd_canary(args: argparse.Namespace) -> int:
    if args.action == "status":
        data = get_json(target(args), "/v1/canaries")
        if args.name:
            data = {args.name: data[args.name]} if args.name in data else {}
        emit(data, args.format, lambda: canaries_text(data))
        return 0 if data or not args.name else 1
    if not args.name:
        raise UbiqError(f"canary {args.action}: give the Canary's NAME")
    status = post_json(target(args), f"/v1/canaries/{args.name}/{args.action}")
    emit(status, args.format, lambda: canaries_text({args.name: status}))
    return 0


def canaries_text(data: Mapping[str, Any]) -> str:
    if not data:
        return "no canary\n"
    lines = []
    for name, s in data.items():
        lines.append(
            f"{name}: {s.get('phase')}, step {s.get('step')}, canary weight {s.get('weight')}%"
            f" — {s.get('why')}"
        )
    return "\n".join(lines) + "\n"
