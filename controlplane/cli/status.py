"""``ubiq status``."""

from __future__ import annotations

import argparse

from controlplane.errors import UbiqError


def cmd_status(args: argparse.Namespace) -> int:
    import json
    import time

    import httpx

    try:
        reply = httpx.get(f"{args.api.rstrip('/')}/v1/status", timeout=5)
        reply.raise_for_status()
    except httpx.HTTPError as exc:
        raise UbiqError(f"cannot read status from {args.api}: {exc}") from None
    status = reply.json()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    policy = status["policy"]
    state = "ok" if policy["ok"] else f"REJECTED last change ({policy['rejected']} rejected)"
    print(f"policy  {policy['modelHash'][:16]}  generation {policy['generation']}  {state}")
    for problem in policy["problems"][:10]:
        print(f"  {problem}")
    print(f"proxies {len(status['proxies'])}")
    now = time.time()
    for p in status["proxies"]:
        acked = " ".join(
            f"{t.rsplit('.', 1)[-1][:3]}={v[:8]}" for t, v in sorted(p["acked"].items())
        )
        nack = p["last_nack"]
        line = (
            f"  {p['node_id']:20} {p['cluster']:12} {p['locality']:24} {p['mode']:5}"
            f" up {now - p['connected_since']:7.0f}s  {acked}"
        )
        print(line)
        if nack:
            print(f"    last NACK ({nack['type_url'].rsplit('.', 1)[-1]}): {nack['message']}")
    print(f"gtm targets {len(status['gtm'])}")
    for t in status["gtm"]:
        health = {True: "healthy", False: "UNHEALTHY", None: "unchecked"}[t["healthy"]]
        error = f"  ({t['last_error']})" if t["last_error"] and t["healthy"] is False else ""
        print(f"  {t['cluster']:12} {t['address']}:{t['port']:<6} {health}{error}")
    return 0
