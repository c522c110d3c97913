"""The demo's feedback-loop section (``ubiq demo --loop``): traffic through every gateway, the
canaries stepping as Prometheus sees their subsets answer well, and the placement decisions.

Shown only when the loop runs (the demo was started with ``--loop``). Traffic is bounded in
count and time; progress is read from the running Ubiq (the same data the API serves), and the
commands to watch it live are printed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from controlplane.cli.loop import canaries_text, placement_text
from controlplane.policy.cluster import ClusterSpec
from controlplane.serve import Ubiq

FINAL = frozenset({"promoted", "rolledBack", "aborted"})
WATCH_S = 90.0  # the section ends when every canary is final, or after this long
MAX_ROUNDS = 20_000  # traffic: rounds of one request per gateway
HOST = "checkout.mesh.example"


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


async def _traffic(clusters: Mapping[str, ClusterSpec], stop: asyncio.Event) -> int:
    """GET /api/cart on checkout through every gateway until ``stop`` (bounded); the count."""
    bases = [f"http://{c.gateway.address}:{c.gateway.port}" for c in clusters.values() if c.gateway]
    sent = 0
    clients = [httpx.AsyncClient(base_url=b, timeout=5) for b in bases]
    try:
        for _ in range(MAX_ROUNDS):
            if stop.is_set():
                break
            for client in clients:
                with contextlib.suppress(httpx.HTTPError):
                    await client.get("/api/cart", headers={"host": HOST})
                    sent += 1
            await asyncio.sleep(0.01)
    finally:
        for client in clients:
            await client.aclose()
    return sent


def _new_events(statuses: Mapping[str, Any], seen: dict[str, int], started: float) -> list[str]:
    lines = []
    for name, status in sorted(statuses.items()):
        events = status.get("events", [])
        for event in events[seen.get(name, 0) :]:
            lines.append(f"  +{event['at'] - started:5.1f}s {name}: {event['message']}")
        seen[name] = len(events)
    return lines


async def show_loop(
    ubiq: Ubiq,
    api: str,
    clusters: Mapping[str, ClusterSpec],
    *,
    token: str,
    token_file: Path,
) -> None:
    if ubiq.options.prometheus is None:  # no feedback source: nothing measured, no canary
        return
    _step("feedback loop: Prometheus -> placement decisions and canaries (traffic to checkout)")
    print(
        "watch it live:\n"
        f"  ubiq canary status --api {api} --token-file {token_file}\n"
        f"  ubiq placement --api {api} --token-file {token_file}\n"
        f"  curl -H 'Authorization: Bearer {token}' {api}/v1/placement   # every decision with its inputs and reason\n"
        "  (Prometheus: ubiq_canary_weight, ubiq_canary_step, ubiq_placement_weight)"
    )
    stop = asyncio.Event()
    load = asyncio.create_task(_traffic(clusters, stop))
    seen: dict[str, int] = {}
    started = time.time()
    deadline = time.monotonic() + WATCH_S
    try:
        while time.monotonic() < deadline:
            statuses = ubiq.canaries()
            for line in _new_events(statuses, seen, started):
                print(line, flush=True)
            if statuses and all(s["phase"] in FINAL for s in statuses.values()):
                break
            if load.done():
                break
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        sent = await load
    statuses = ubiq.canaries()
    for line in _new_events(statuses, seen, started):
        print(line)
    print(f"({sent} requests sent through {len(clusters)} gateways)")
    print(f"$ ubiq canary status --api {api} --token-file {token_file}")
    print(canaries_text(statuses).rstrip())
    print(f"$ ubiq placement --api {api} --token-file {token_file}")
    print(placement_text(ubiq.placement(), one=False).rstrip())


async def show_region_left(ubiq: Ubiq, region: str, wait_s: float = 10.0) -> None:
    """With the loop: once no decision weights ``region`` (its gateway is down: health leaves it
    at once, so Envoy sends it nothing, as DNS answers show), the decisions (bounded wait)."""
    if ubiq.options.prometheus is None:  # the demo without --loop shows DNS alone
        return
    loop = ubiq.loop
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if all(region not in d.weights for d in loop.decisions.values()):
            break
        await asyncio.sleep(0.1)
    print(f"placement decisions now (Envoy weights; {region} left while its gateway is down):")
    print(placement_text(ubiq.placement(), one=False).rstrip())


async def show_region_back(ubiq: Ubiq, region: str, wait_s: float = 45.0) -> None:
    """With the loop: wait (bounded) until a decision weights ``region`` again -- healthy again,
    it returns after the Placement's minimum dwell, then by paced steps -- and show the
    decisions."""
    if ubiq.options.prometheus is None:  # the demo without --loop shows DNS alone
        return
    loop = ubiq.loop
    started = time.monotonic()
    while time.monotonic() - started < wait_s:
        if any(region in d.weights for d in loop.decisions.values()):
            break
        await asyncio.sleep(0.1)
    took = time.monotonic() - started
    print(
        f"placement decisions now ({region} weighted again after {took:.1f}s: dwell, then steps):"
    )
    print(placement_text(ubiq.placement(), one=False).rstrip())
