"""``ubiq endpoint``: register, heartbeat, deregister and list endpoints of a running server."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from controlplane.cli.api_client import get_json, send_json, target
from controlplane.cli.output import emit
from controlplane.errors import UbiqError

ACTIONS = ("register", "heartbeat", "deregister", "list")


def add_endpoint_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("service", nargs="?", help="the Service (discovery: api); optional for list")
    p.add_argument("id", nargs="?", help="the endpoint's id (heartbeat, deregister)")
    p.add_argument("--cluster", help="register: the endpoint's Cluster")
    p.add_argument("--address", help="register: the endpoint's IP address")
    p.add_argument("--port", type=int, help="register: port (default: the Service's first)")
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="register: a label, repeatable",
    )
    p.add_argument("--weight", type=int, help="register: load-balancing weight (default 1)")
    p.add_argument("--ttl", type=int, help="register: seconds without a heartbeat (default 15)")
    p.add_argument(
        "--id", dest="endpoint_id", help="register: the id (default CLUSTER.ADDRESS.PORT)"
    )


def labels(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UbiqError(f"--label: expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def registration(args: argparse.Namespace) -> dict[str, Any]:
    if not args.cluster or not args.address:
        raise UbiqError("endpoint register: give --cluster and --address")
    body: dict[str, Any] = {"cluster": args.cluster, "address": args.address}
    optional = {"port": args.port, "weight": args.weight, "ttl": args.ttl, "id": args.endpoint_id}
    body.update({k: v for k, v in optional.items() if v is not None})
    if args.label:
        body["labels"] = labels(args.label)
    return body


def cmd_endpoint(args: argparse.Namespace) -> int:
    if args.action == "list":
        path = f"/v1/endpoints/{args.service}" if args.service else "/v1/endpoints"
        rows = get_json(target(args), path)
        emit(rows, args.format, lambda: endpoints_text(rows))
        return 0
    if not args.service:
        raise UbiqError(f"endpoint {args.action}: give the SERVICE")
    if args.action == "register":
        reply = send_json(target(args), "POST", f"/v1/endpoints/{args.service}", registration(args))
        emit(reply, args.format, lambda: endpoints_text([reply]))
        return 0
    if not args.id:
        raise UbiqError(f"endpoint {args.action}: give the SERVICE and the endpoint's ID")
    if args.action == "heartbeat":
        path = f"/v1/endpoints/{args.service}/{args.id}/heartbeat"
        reply = send_json(target(args), "POST", path)
        emit(reply, args.format, lambda: f"{args.service}/{args.id}: ttl {reply['ttl']}s\n")
        return 0
    send_json(target(args), "DELETE", f"/v1/endpoints/{args.service}/{args.id}")
    emit({"deregistered": f"{args.service}/{args.id}"}, args.format, lambda: "deregistered\n")
    return 0


def endpoints_text(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "no registered endpoint\n"
    lines = []
    for r in rows:
        port = r.get("port") or "default"
        tags = ",".join(f"{k}={v}" for k, v in sorted(r.get("labels", {}).items()))
        lines.append(
            f"{r['service']}/{r['id']}  {r['cluster']}  {r['address']}:{port}"
            f"  weight {r.get('weight', 1)}  ttl {r.get('ttl')}s{'  ' + tags if tags else ''}"
        )
    return "\n".join(lines) + "\n"
