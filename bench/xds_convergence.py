"""xDS convergence with 10 real Envoys: policy file written -> every Envoy serves the new route.

Each Envoy is its own Ubiq cluster (``c00``..``c09``) with its own listener port, so Ubiq runs
in-process code (``controlplane.serve.Ubiq``, the object ``ubiq serve`` runs) with
``CompileOptions.listener_ports`` -- the CLI has a single ``--listener-port`` and ten Envoys
cannot share one port on one machine. Ubiq runs in its own process (``multiprocessing``, spawn),
the demo backends in another, and the measuring loop here, so none shares an event loop.

One round: atomically replace ``routes.yaml`` (temp file + ``os.replace``) flipping the
``web`` route between v1 100/0 and v2 0/100, then poll every Envoy over one keep-alive
connection each (one request at a time, ~5 ms apart, bounded in time) until it answers with the
new ``x-ubiq-version``. Converged = the last Envoy's first new answer. Ubiq's process reports,
on the same CLOCK_MONOTONIC, when watchfiles yielded the change, the model was loaded and
validated, compiled, published, the route pushed to and ACKed by each Envoy: the stage profile.

Configurations (all in the same run; ratios against the first, SotW with ``--debounce-ms 100``):
SotW and Delta ADS, ``--debounce-ms`` 100 and 20, and (``--watch-step-ms``) the store's
watchfiles step patched in the Ubiq process to show what that one constant costs; with
``--vhds`` each ``--services`` config runs again with ``serve --xds-vhds`` (the "sent" and
"acked" stages are then the last VirtualHost sent and ACKed).

    .venv/bin/python -m bench.xds_convergence [--envoys 10] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._convergence_procs import backend_process, policy_files, routes_yaml, ubiq_process
from controlplane.demo.envoys import EnvoyProcess, start_envoy, wait_ready
from controlplane.ports import free_port

RESULTS = Path(__file__).parent / "results"
ROUND_TIMEOUT_S = 5.0
STAGES = ("watch", "loaded", "compiled", "published", "sent", "acked", "served")


@dataclass(frozen=True, slots=True)
class Config:
    mode: str  # "sotw" | "delta"
    debounce_ms: int
    watch_step_ms: int | None = None  # None: the store's own step
    services: int = 0  # extra services loaded beside ``web`` (each with its RoutePolicy)
    vhds: bool = False  # ``serve --xds-vhds``: virtual hosts over VHDS

    @property
    def label(self) -> str:
        step = f", step {self.watch_step_ms} ms (patched)" if self.watch_step_ms else ""
        loaded = f", {self.services} services" if self.services else ""
        vhds = ", VHDS" if self.vhds else ""
        return f"{self.mode} debounce {self.debounce_ms}{step}{loaded}{vhds}"


class Poller:
    """One keep-alive HTTP/1.1 connection to one Envoy listener; one request at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def version(self) -> str:
        """The ``x-ubiq-version`` of one answer ("" on a failed request or another status)."""
        try:
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self._reader is not None
            self._writer.write(b"GET /probe HTTP/1.1\r\nhost: web\r\n\r\n")
            head = await self._reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
            }
            await self._reader.readexactly(int(headers.get("content-length", "0")))
            return headers.get("x-ubiq-version", "") if " 200 " in lines[0] else ""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
            return ""

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def first_served(poller: Poller, want: str, interval_s: float, deadline: float) -> float:
    """Monotonic time of the first answer carrying ``want``; ``inf`` at the deadline."""
    while time.monotonic() < deadline:
        if await poller.version() == want:
            return time.monotonic()
        await asyncio.sleep(interval_s)
    return float("inf")


def _write_routes(directory: Path, version: str) -> float:
    tmp = directory / "routes.yaml.tmp"  # not a policy suffix: the watcher ignores it
    tmp.write_text(routes_yaml(version))
    started = time.monotonic()
    os.replace(tmp, directory / "routes.yaml")
    return started


def _drain(events: Any) -> list[tuple[Any, ...]]:
    out = []
    while True:
        try:
            out.append(events.get_nowait())
        except Exception:  # queue.Empty
            return out


def _stages(t0: float, events: list[tuple[Any, ...]], served: dict[str, float]) -> dict[str, Any]:
    """Milliseconds after the write at which each stage was last reached (first watch event)."""
    after = [e for e in events if e[1] >= t0]

    def first(kind: str) -> float | None:
        times = [e[1] for e in after if e[0] == kind]
        return (min(times) - t0) * 1e3 if times else None

    def last(kind: str) -> float | None:
        times = [e[1] for e in after if e[0] == kind]
        return (max(times) - t0) * 1e3 if times else None

    per_node_acked = {e[2]: (e[1] - t0) * 1e3 for e in after if e[0] == "acked"}
    return {
        "watch": first("watch"),
        "loaded": first("loaded"),
        "compiled": first("compiled"),
        "published": last("published"),
        "sent": last("sent"),
        "acked": last("acked"),
        "served": max(served.values()),
        "watch_batches": sum(1 for e in after if e[0] == "watch"),
        "acked_per_envoy": per_node_acked,
    }


@contextmanager
def _process(ctx: Any, target: Any, *args: Any) -> Iterator[Any]:
    stop, ready = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=target, args=(*args, ready, stop), daemon=True)
    proc.start()
    try:
        if not ready.wait(90):  # a cold start of 1,000 services on a loaded machine
            raise RuntimeError(f"{target.__name__} did not start")
        yield proc
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


async def run_config(
    config: Config, *, envoys: int, rounds: int, warmup: int, interval_s: float, backend_port: int
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    work = Path(tempfile.mkdtemp(prefix="ubiq-conv-"))
    policies = work / "policies"
    policies.mkdir()
    for name, text in policy_files(envoys, backend_port, config.services).items():
        (policies / name).write_text(text)
    clusters = [f"c{i:02d}" for i in range(envoys)]
    ports = {c: free_port() for c in clusters}
    xds_port = free_port()
    events = ctx.Queue()
    args = (
        str(policies),
        xds_port,
        ports,
        config.debounce_ms,
        config.watch_step_ms,
        config.vhds,
        events,
    )
    started: list[EnvoyProcess] = []
    with _process(ctx, ubiq_process, *args):
        try:
            for i, cluster in enumerate(clusters):
                started.append(
                    start_envoy(
                        work,
                        cluster=cluster,
                        region=f"r{i:02d}",
                        zone="",
                        xds_port=xds_port,
                        delta=config.mode == "delta",
                    )
                )
            for envoy in started:
                await asyncio.to_thread(wait_ready, envoy, 60)
            pollers = {c: Poller(ports[c]) for c in clusters}
            deadline = time.monotonic() + 30
            for cluster, poller in pollers.items():
                if await first_served(poller, "v1", 0.05, deadline) == float("inf"):
                    raise RuntimeError(f"envoy {cluster} never served v1; logs in {work}")
            results = []
            for round_no in range(1, warmup + rounds + 1):
                want = "v2" if round_no % 2 else "v1"
                await asyncio.sleep(0.25 + random.uniform(0, 0.05))
                _drain(events)
                t0 = _write_routes(policies, want)
                deadline = t0 + ROUND_TIMEOUT_S
                times = await asyncio.gather(
                    *(first_served(p, want, interval_s, deadline) for p in pollers.values())
                )
                served = {c: (t - t0) * 1e3 for c, t in zip(clusters, times, strict=True)}
                await asyncio.sleep(0.1)  # late ACKs of this round
                if round_no > warmup:
                    results.append(
                        {**_stages(t0, _drain(events), served), "served_per_envoy": served}
                    )
            for poller in pollers.values():
                poller.close()
        finally:
            for envoy in started:
                envoy.stop()
    shutil.rmtree(work, ignore_errors=True)  # kept, with the Envoy logs, when something failed
    return {"config": config.label, "mode": config.mode, "debounce_ms": config.debounce_ms,
            "services": config.services, "vhds": config.vhds,
            "watch_step_ms": config.watch_step_ms, "rounds": results}  # fmt: skip


def _q(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    rounds = run["rounds"]
    served = [r["served"] for r in rounds]
    stages = {
        s: statistics.median(v) for s in STAGES if (v := [r[s] for r in rounds if r[s] is not None])
    }
    clusters = sorted(rounds[0]["served_per_envoy"]) if rounds else []
    per_envoy = {
        c: {
            "p50_ms": statistics.median(x := [r["served_per_envoy"][c] for r in rounds]),
            "p99_ms": _q(x, 99),
            "max_ms": max(x),
        }
        for c in clusters
    }
    return {
        "config": run["config"],
        "rounds": len(rounds),
        "p50_ms": statistics.median(served),
        "p99_ms": _q(served, 99),
        "max_ms": max(served),
        "stage_median_ms": stages,
        "watch_batches_max": max(r["watch_batches"] for r in rounds),
        "timed_out_rounds": sum(1 for x in served if x == float("inf")),
        "per_envoy": per_envoy,
    }


def print_tables(summaries: list[dict[str, Any]]) -> None:
    base = summaries[0]
    print("\nall Envoys serving the new route, ms after the file write (rounds per config)")
    print("config | rounds (timed out) | p50 | p99 | max | p50 vs base | p99 vs base")
    for s in summaries:
        print(
            f"{s['config']} | {s['rounds']} ({s['timed_out_rounds']}) | {s['p50_ms']:.1f} |"
            f" {s['p99_ms']:.1f} |"
            f" {s['max_ms']:.1f} | {s['p50_ms'] / base['p50_ms']:.2f}x |"
            f" {s['p99_ms'] / base['p99_ms']:.2f}x"
        )
    print("\nwhere the time goes: median ms after the write at which each stage was reached")
    print("config | " + " | ".join(STAGES))
    for s in summaries:
        cells = [f"{s['stage_median_ms'].get(k, float('nan')):.1f}" for k in STAGES]
        print(f"{s['config']} | " + " | ".join(cells))
    print("\nper Envoy, ms: p50 / p99 / max")
    print("envoy | " + " | ".join(s["config"] for s in summaries))
    for envoy in sorted(base["per_envoy"]):
        cells = [
            "{p50_ms:.1f} / {p99_ms:.1f} / {max_ms:.1f}".format(**s["per_envoy"][envoy])
            for s in summaries
        ]
        print(f"{envoy} | " + " | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--envoys", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    parser.add_argument("--modes", default="sotw,delta")
    parser.add_argument("--debounce-ms", default="100,20")
    parser.add_argument(
        "--watch-step-ms", type=int, default=20, help="extra config with this step; 0: skip it"
    )
    parser.add_argument(
        "--services",
        default="1000",
        help="extra configs (the first mode and debounce) with this many more services loaded,"
        " each with a RoutePolicy (a virtual host in every Envoy's routes); comma-separated",
    )
    parser.add_argument(
        "--vhds",
        action="store_true",
        help="also run each --services config with serve --xds-vhds (virtual hosts over VHDS)",
    )
    args = parser.parse_args(argv)
    configs = [
        Config(mode, int(d)) for d in args.debounce_ms.split(",") for mode in args.modes.split(",")
    ]
    if args.watch_step_ms:
        configs.append(Config(configs[0].mode, configs[0].debounce_ms, args.watch_step_ms))
    for count in (int(n) for n in args.services.split(",") if n.strip()):
        if count:
            configs.append(Config(configs[0].mode, configs[0].debounce_ms, services=count))
            if args.vhds:
                configs.append(
                    Config(configs[0].mode, configs[0].debounce_ms, services=count, vhds=True)
                )
    ctx = mp.get_context("spawn")
    backend_port = free_port()
    runs = []
    with _process(ctx, backend_process, args.envoys, backend_port):
        for config in configs:
            print(f"running {config.label}: {args.envoys} Envoys, {args.rounds} rounds", flush=True)
            runs.append(
                asyncio.run(
                    run_config(
                        config,
                        envoys=args.envoys,
                        rounds=args.rounds,
                        warmup=args.warmup,
                        interval_s=args.interval_ms / 1e3,
                        backend_port=backend_port,
                    )
                )
            )
    summaries = [summarize(r) for r in runs]
    print_tables(summaries)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "xds_convergence.json"
    out.write_text(json.dumps({"summaries": summaries, "runs": runs}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
