"""Steering and health-probe throughput.

    .venv/bin/python -m bench.steering [--names 100] [--groups 200] [--targets 200]

Part 1: ``steer_all`` over names x client groups for every strategy; baseline = failover (the
cheapest: no hashing, no latency rows), reported as a ratio measured in the same run.
Part 2: ``HealthChecker.check_once`` over N targets against one loopback asyncio backend;
baseline = TCP connect probes; HTTP probes at two concurrency bounds as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from bench._common import best_of
from controlplane.gtm.health.checker import HealthChecker
from controlplane.gtm.health.state import CheckedTarget, HealthCheck
from controlplane.gtm.steering import steer_all
from controlplane.gtm.types import ClientGroup, HealthView, SteeringPolicy, Strategy, Target

REGIONS = ("eu-west", "eu-central", "us-west", "us-east", "ap-south", "ap-northeast")
STRATEGIES: tuple[Strategy, ...] = ("failover", "roundRobin", "weighted", "geo", "lowestLatency")
RESULTS = Path(__file__).parent / "results"


def build(names: int, groups: int) -> tuple[list[SteeringPolicy], list[ClientGroup], HealthView]:
    group_list = [ClientGroup(f"g{i}", (), region=REGIONS[i % len(REGIONS)]) for i in range(groups)]
    latency = {
        g.name: {r: float((i * 37 + j * 53) % 300 + 5) for j, r in enumerate(REGIONS)}
        for i, g in enumerate(group_list)
    }
    policies = []
    for n in range(names):
        targets = tuple(
            Target(
                f"c{n}-{j}", r, f"10.{n // 250}.{n % 250}.{j + 1}", 443, weight=j + 1, tier=j % 2
            )
            for j, r in enumerate(REGIONS)
        )
        policies.append(
            SteeringPolicy(
                f"n{n}.gtm.example", "gtm.example", "failover", targets, 10, latency=latency
            )
        )
    # one target in three unhealthy, so reasons and fallbacks are exercised
    keys = [(t.cluster, t.address, t.port) for p in policies for t in p.targets]
    health = HealthView(frozenset(keys[1::3]) | frozenset(keys[2::3]), frozenset(keys))
    return policies, group_list, health


def bench_steering(names: int, groups: int) -> list[dict[str, Any]]:
    policies, group_list, health = build(names, groups)
    rows: list[dict[str, Any]] = []
    base = 0.0
    for strategy in STRATEGIES:
        ps = [replace(p, strategy=strategy) for p in policies]
        seconds = best_of(functools.partial(steer_all, ps, group_list, health, 1), 5)
        if strategy == "failover":
            base = seconds
        rows.append({"case": f"steer_all {strategy}", "seconds": seconds, "ratio": seconds / base})
    ps = [replace(p, strategy="lowestLatency") for p in policies]
    previous = steer_all(ps, group_list, health, 1)
    seconds = best_of(lambda: steer_all(ps, group_list, health, 2, previous), 5)
    rows.append(
        {"case": "steer_all lowestLatency+previous", "seconds": seconds, "ratio": seconds / base}
    )
    decisions = names * (groups + 1)
    for row in rows:
        row["decisions_per_s"] = decisions / row["seconds"]
    return rows


async def _http_backend() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    return server, int(server.sockets[0].getsockname()[1])


async def bench_probes(targets: int) -> list[dict[str, Any]]:
    server, port = await _http_backend()
    rows: list[dict[str, Any]] = []
    base = 0.0
    try:
        for kind, conc in (("tcp", 32), ("http", 32), ("http", 4)):
            check = HealthCheck(kind=kind, timeout=5.0)  # type: ignore[arg-type]
            cts = [
                CheckedTarget(Target(f"c{i}", "r", "127.0.0.1", port), check)
                for i in range(targets)
            ]
            hc = HealthChecker(
                cts, lambda v: None, registry=CollectorRegistry(), max_concurrency=conc
            )
            await hc.check_once()  # warm up
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                await hc.check_once()
                best = min(best, time.perf_counter() - t0)
            failed = sum(1 for r in hc.rows() if r.healthy is False)
            if not base:
                base = best
            rows.append(
                {
                    "case": f"check_once {kind} x{targets} (concurrency {conc})",
                    "seconds": best,
                    "ratio": best / base,
                    "probes_per_s": targets / best,
                    "unhealthy": failed,
                }
            )
    finally:
        server.close()
        await server.wait_closed()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--names", type=int, default=100)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--targets", type=int, default=200)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    steering = bench_steering(args.names, args.groups)
    probes = asyncio.run(bench_probes(args.targets))
    print(f"steer_all: {args.names} names x {args.groups + 1} groups, 6 targets each")
    print(f"{'case':44} {'seconds':>9} {'decisions/s':>12} {'vs failover':>12}")
    for r in steering:
        print(
            f"{r['case']:44} {r['seconds']:9.4f} {r['decisions_per_s']:12,.0f} {r['ratio']:11.2f}x"
        )
    print()
    print(f"{'case':44} {'seconds':>9} {'probes/s':>12} {'vs tcp':>12}")
    for r in probes:
        print(f"{r['case']:44} {r['seconds']:9.4f} {r['probes_per_s']:12,.0f} {r['ratio']:11.2f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "steering.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "python": platform.python_version(),
                "steering": steering,
                "probes": probes,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
