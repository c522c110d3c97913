"""Prototype: ADS fan-out served by several processes on one port (SO_REUSEPORT).

What the single-process bench (bench/xds_fanout.py) cannot answer: would spreading the streams
over K server processes, each holding the same snapshots, bring "change -> every client ACKed"
under a second at 5,000 clients on this machine? Each server process builds the snapshots
itself (standing in for bytes shipped from a control process), serves the streams the kernel
hands it and times its own clients' ACKs; a coordinator starts every round in all of them at
once and merges the figures. No status merging, no NACK aggregation, no mTLS: a measurement,
not a product path (docs/benchmarks.md, "xDS fan-out").

    .venv/bin/python -m bench.xds_fanout_procs --clients 5000 --server-procs 1,2 [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import Any

from bench.xds_fanout import (
    RESULTS,
    _client_process,
    _cpu_seconds,
    _new_loop,
    _raise_fd_limit,
    _snapshot,
    ack_tracker,
)

ROUND_TIMEOUT_S = 60.0
SYNC_TIMEOUT_S = 180.0


def _worker(index: int, port: int, rounds: int, loop: str, commands: Any, replies: Any) -> None:
    _raise_fd_limit()
    with asyncio.Runner(loop_factory=lambda: _new_loop(loop)) as runner:
        runner.run(_work(index, port, rounds, commands, replies))


async def _work(index: int, port: int, rounds: int, commands: Any, replies: Any) -> None:
    import grpc

    from controlplane.xds.cache import SnapshotCache
    from controlplane.xds.node import group_key
    from controlplane.xds.resources import ORDER
    from controlplane.xds.server import XdsServer

    group = group_key("bench")
    target: dict[str, str] = {}
    done: dict[int, float] = {}

    snapshots = [_snapshot(r) for r in range(rounds + 1)]
    cache, status = SnapshotCache(), ack_tracker(target, done)
    cache.set_snapshot(group, snapshots[0])
    target.update({t: snapshots[0].type_version(t) for t in ORDER})
    xds = XdsServer(cache, status=status)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    xds.add_to_server(server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    replies.put(("port", index, bound))
    while True:
        command = await asyncio.to_thread(commands.get)
        if command[0] == "status":
            replies.put(("status", index, len(status), len(done)))
        elif command[0] == "round":
            snap = snapshots[command[1]]
            done.clear()
            target.clear()
            target.update({t: snap.type_version(t) for t in ORDER})
            cpu = time.process_time()
            t0 = time.perf_counter()
            cache.set_snapshot(group, snap)
            deadline = t0 + ROUND_TIMEOUT_S
            while len(done) < len(status) and time.perf_counter() < deadline:
                await asyncio.sleep(0.002)
            latencies = [t - t0 for t in done.values()]
            replies.put(("round", index, latencies, len(status), time.process_time() - cpu))
        else:
            break
    await server.stop(0)


def _gather(replies: Any, kind: str, count: int) -> list[Any]:
    got: list[Any] = []
    while len(got) < count:
        reply = replies.get(timeout=ROUND_TIMEOUT_S + 10)
        if reply[0] == kind:
            got.append(reply)
    return got


def run(count: int, procs: int, rounds: int, loop: str, client_procs: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    replies = ctx.Queue()
    queues = [ctx.Queue() for _ in range(procs)]
    workers = []
    port = 0
    for i in range(procs):  # the first binds port 0, the others its port
        worker = ctx.Process(
            target=_worker, args=(i, port, rounds, loop, queues[i], replies), daemon=True
        )
        worker.start()
        workers.append(worker)
        port = _gather(replies, "port", 1)[0][2]
    from controlplane.xds.resources import ENDPOINT

    names = sorted(_snapshot(0).get(ENDPOINT).entries)
    stop = ctx.Event()
    shares = [
        count // client_procs + (1 if i < count % client_procs else 0) for i in range(client_procs)
    ]
    readies = [ctx.Event() for _ in shares]
    firsts = [sum(shares[:i]) for i in range(len(shares))]
    clients = [
        ctx.Process(
            target=_client_process,
            args=(port, first, share, names, stop, ready, loop),
            daemon=True,
        )
        for first, share, ready in zip(firsts, shares, readies, strict=True)
        if share
    ]
    for proc in clients:
        proc.start()
    started = time.perf_counter()
    per_proc: list[int] = []
    while True:
        for q in queues:
            q.put(("status",))
        status = _gather(replies, "status", procs)
        per_proc = [s[2] for s in sorted(status)]
        if sum(per_proc) >= count and sum(s[3] for s in status) >= count:
            break
        if time.perf_counter() - started > SYNC_TIMEOUT_S:
            stop.set()
            raise TimeoutError(f"{sum(per_proc)}/{count} connected after {SYNC_TIMEOUT_S} s")
        time.sleep(0.2)
    initial_sync = time.perf_counter() - started
    time.sleep(0.5)
    latencies: list[float] = []
    last: list[float] = []
    server_cpu = 0.0
    clients_cpu = sum(_cpu_seconds(p.pid or 0) for p in clients)
    for round_no in range(1, rounds + 1):
        for q in queues:
            q.put(("round", round_no))
        results = _gather(replies, "round", procs)
        got = [lat for r in results for lat in r[2]]
        if len(got) < count:
            raise TimeoutError(f"round {round_no}: {len(got)}/{count} clients ACKed")
        latencies += got
        last.append(max(got))
        server_cpu += sum(r[4] for r in results)
        time.sleep(0.2)
    clients_cpu = sum(_cpu_seconds(p.pid or 0) for p in clients) - clients_cpu
    stop.set()
    for q in queues:
        q.put(("stop",))
    for proc in [*clients, *workers]:
        proc.join(30)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "clients": count,
        "server_processes": procs,
        "streams_per_process": per_proc,
        "rounds": rounds,
        "initial_sync_s": initial_sync,
        "push_p50_s": statistics.median(latencies),
        "push_p99_s": quantiles[98],
        "all_acked_max_s": max(last),
        "server_cpu_per_round_s": server_cpu / rounds,
        "clients_cpu_per_round_s": clients_cpu / rounds,
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--server-procs", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args(argv)
    _raise_fd_limit()
    rows = [
        run(args.clients, int(k), args.rounds, args.loop, args.client_procs)
        for k in args.server_procs.split(",")
    ]
    print(f"xDS fan-out over SO_REUSEPORT server processes, {args.clients} clients")
    print("server procs | streams per proc | push p50 ms | push p99 ms | last ACK ms | "
          "server CPU ms/round | clients CPU ms/round")  # fmt: skip
    for row in rows:
        print(
            f"{row['server_processes']} | {row['streams_per_process']} | "
            f"{row['push_p50_s'] * 1e3:.0f} | {row['push_p99_s'] * 1e3:.0f} | "
            f"{row['all_acked_max_s'] * 1e3:.0f} | {row['server_cpu_per_round_s'] * 1e3:.0f} | "
            f"{row['clients_cpu_per_round_s'] * 1e3:.0f}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "xds_fanout_procs.json").write_text(json.dumps({"runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
