"""The feedback loop end to end: first bad scrape -> changed Envoy weight (and DNS answer), and the
loop's tick at size with the event loop kept free.

    .venv/bin/python -m bench.feedback_loop [--rounds 3] [--regions 50] [--services 1000]

**Reaction** (the real e2e rig, ``tests/support/mesh.py``: two Envoys fed by Ubiq's xDS, real
backends, a real Prometheus scraping every 1 s, ``ubiq serve``'s parts with ``--prometheus`` and a
1 s poll). ``checkout`` has a Placement with ``slo: {successRate: 0.95}`` and every other damping
setting at its default. Each round starts a fresh rig, sends steady traffic through both
gateways, then makes us-west's backends answer 30 % 503 and times, from that instant:

- the first bad scrape: the timestamp of the first sample Prometheus holds in which us-west's
  5xx zone counter rose (read back from Prometheus afterwards);
- the decision leaving us-west (``changedAt`` of ``GET /v1/placement/checkout``);
- every Envoy holding no us-west locality at priority 0 (admin ``/config_dump``, polled 20x/s);
- the GTM answering the america client group from eu-west (dig-equivalent, polled 20x/s).

Baseline in the same run: the scrape itself (fault -> first bad scrape), and the issue's target
(10 s from the first bad scrape); the table gives each time and its ratio to the target.

**Tick at size** (``--regions`` x ``--services``, lowestLatency + SLO, the model and signals of
``bench.placement_decide``): a ``PlacementLoop`` inside a running event loop gets a poll where
every value moved. Timed: signals handed in -> decisions applied, and the longest stall of the
event loop meanwhile (a 5 ms ticker). Baseline in the same run: the same tick run inline on the
event loop (what the loop did before it moved ticks to its worker thread): the stall is the tick.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import structlog

from bench._common import save
from bench.placement_decide import build_model, build_signals
from controlplane.feedback.signals import Signals
from controlplane.loop import PlacementLoop
from controlplane.placement.consumers import loop_driven
from controlplane.placement.engine import decide_all
from controlplane.policy.model import Model
from tests.support.loop_e2e import AMERICA, answer, placement, serving_regions, traffic
from tests.support.mesh import Mesh, mesh

TARGET_S = 10.0
SLO = """\
apiVersion: ubiq.io/v1alpha1
kind: Placement
metadata: {name: checkout}
spec:
  service: checkout
  strategy: {type: static, slo: {successRate: 0.95}}
"""
FIVE_XX = (
    'envoy_cluster_zone_upstream_rq_xx{envoy_response_code_class="5",'
    'ubiq_to_zone="us-west-1a",envoy_cluster_name=~"checkout.*"}'
)


def _until(check: Callable[[], bool], limit: float, what: str) -> float:
    """Poll ``check`` every 50 ms; the wall-clock time it first held."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if check():
                return time.time()
        except Exception:  # a server still answering the previous state, a reset connection
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not within {limit:.0f}s")


def _first_bad_scrape(rig: Mesh, since: float) -> float:
    """Timestamp of the first sample after ``since`` where a us-west 5xx counter rose."""
    assert rig.prom is not None
    reply = httpx.get(
        f"{rig.prom.url}/api/v1/query", params={"query": f"{FIVE_XX}[2m]"}, timeout=5
    ).json()
    first = float("inf")
    for series in reply["data"]["result"]:
        values = [(float(t), float(v)) for t, v in series["values"]]
        for (_, before), (t, after) in itertools.pairwise(values):
            if after > before and t >= since:
                first = min(first, t)
                break
        if values and values[0][0] >= since and values[0][1] > 0:  # series born bad
            first = min(first, values[0][0])
    if first == float("inf"):
        raise RuntimeError("no bad scrape found in Prometheus")
    return first


def _judged(rig: Mesh, region: str) -> bool:
    rows = placement(rig, "checkout")["regions"]
    row = next(r for r in rows if r["region"] == region)
    return bool(row["judged"]) and (row["requests"] or 0) >= 20


def reaction_round(workdir: Path) -> dict[str, float]:
    with mesh(workdir, feedback=True, extra_policy=SLO) as rig, traffic(rig):
        us, eu = rig.gateways["us-west"][0], rig.gateways["eu-west"][0]
        _until(lambda: answer(rig, AMERICA) == [us], 30, "america answered by us-west")
        _until(
            lambda: (
                placement(rig, "checkout")["signalsAt"] is not None
                and "us-west" in placement(rig, "checkout")["weights"]
            ),
            30,
            "fresh signals with us-west weighted",
        )
        # good traffic judged first (the minimum volume reached), so the SLO sees a full window
        _until(lambda: _judged(rig, "us-west"), 30, "us-west judged on good traffic")
        fault = time.time()
        for name, backend in rig.backends.items():
            if name.startswith("checkout_us"):
                backend.fail_ratio = 0.3
        left = {frozenset({"eu-west"})}
        envoy = _until(
            lambda: all(serving_regions(e.admin_port, "checkout") == left for e in rig.envoys),
            60,
            "every Envoy without us-west",
        )
        dns = _until(lambda: answer(rig, AMERICA) == [eu], 60, "DNS answering eu-west")
        decided = float(placement(rig, "checkout")["changedAt"])
        scrape = _first_bad_scrape(rig, fault)
    return {
        "fault_to_first_bad_scrape": scrape - fault,
        "scrape_to_decision": decided - scrape,
        "scrape_to_envoy": envoy - scrape,
        "scrape_to_dns": dns - scrape,
    }


def _prepared(regions: int, services: int) -> tuple[PlacementLoop, Model, Signals]:
    """A loop that has decided a first poll (inline: no event loop runs yet), and the next poll,
    in which every value moved."""
    strategy = {"type": "lowestLatency", "slo": {"successRate": 0.99}}
    model = build_model(regions, services, {"strategy": strategy})
    loop = PlacementLoop(on_model=lambda m: None, on_decisions=lambda m, d: None, clock=lambda: 1.0)
    loop.effective_model(model)
    loop.update_signals(build_signals(regions, services, 0.0))
    return loop, model, build_signals(regions, services, 1.0, jitter=0.5)


async def _measure_tick(
    loop: PlacementLoop, model: Model, moved: Signals, *, inline: bool
) -> dict[str, float]:
    stall = [0.0]
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            stall[0] = max(stall[0], now - last - 0.005)
            last = now

    beat = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)  # the ticker's first beats
    started = time.perf_counter()
    if inline:  # what the loop did before: the engine on the event loop
        decide_all(
            model, now=1.0, signals=moved, previous=loop.decisions, services=loop_driven(model)
        )
    else:
        loop.update_signals(moved)
        while loop.ticks < 1:
            await asyncio.sleep(0.001)
    took = time.perf_counter() - started
    await asyncio.sleep(0.02)
    stop.set()
    await beat
    loop.stop()
    return {"tick_s": took, "max_event_loop_stall_s": stall[0]}


def tick(regions: int, services: int, *, inline: bool) -> dict[str, float]:
    loop, model, moved = _prepared(regions, services)
    return asyncio.run(_measure_tick(loop, model, moved, inline=inline))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--regions", type=int, default=50)
    parser.add_argument("--services", type=int, default=1000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    rounds = []  # --rounds 0: the tick at size only (no e2e rig)
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="ubiq-bench-loop-") as tmp:
            rounds.append(reaction_round(Path(tmp)))
        print(f"round {i + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in rounds[-1].items()))
    reaction: dict[str, Any] = {}
    if rounds:
        print()
        print("| interval | rounds | median s | max s | median / 10 s target |")
        print("|---|---:|---:|---:|---:|")
    for key in rounds[0] if rounds else ():
        values = [r[key] for r in rounds]
        median, worst = statistics.median(values), max(values)
        reaction[key] = {"median_s": median, "max_s": worst, "values": values}
        label = {
            "fault_to_first_bad_scrape": "baseline: fault -> first bad scrape (Prometheus)",
            "scrape_to_decision": "first bad scrape -> decision leaves us-west",
            "scrape_to_envoy": "first bad scrape -> every Envoy's weights changed",
            "scrape_to_dns": "first bad scrape -> DNS answer changed",
        }[key]
        print(
            f"| {label} | {len(values)} | {median:.2f} | {worst:.2f} | {median / TARGET_S:.2f}x |"
        )

    worker = tick(args.regions, args.services, inline=False)
    inline = tick(args.regions, args.services, inline=True)
    print()
    print(f"tick at {args.regions} regions x {args.services} services, every value moved:")
    print("| tick | tick s | longest event-loop stall s | stall vs inline |")
    print("|---|---:|---:|---:|")
    for name, row in (("inline on the event loop (baseline)", inline), ("worker thread", worker)):
        ratio = row["max_event_loop_stall_s"] / inline["max_event_loop_stall_s"]
        print(
            f"| {name} | {row['tick_s']:.3f} | {row['max_event_loop_stall_s']:.3f} | {ratio:.2f}x |"
        )
    path = save("feedback_loop", args, reaction=reaction, tick={"worker": worker, "inline": inline})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
