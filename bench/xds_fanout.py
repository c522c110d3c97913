"""ADS fan-out: N simulated ADS clients (grpc.aio, in other processes) on one XdsServer.

Measures, for N = 1 (baseline), 100 and 1,000 clients (5,000 with ``--clients 1,5000``)
subscribed to a snapshot of 100 EDS clusters (+ 100 ClusterLoadAssignments, 1 listener, 1 route):

- push latency: from ``cache.set_snapshot`` until each client has ACKed the new versions (the
  route and 10 changed ClusterLoadAssignments change every round), p50/p99 over clients x rounds,
  and the time until the last client ACKed; the server's CPU time per round;
- memory per connected client: RSS growth of the server process from "snapshot loaded, no
  client" to "N clients connected and in sync", divided by N; with ``--tracemalloc``, where the
  server's Python heap grew, by allocating line.

Each N runs in a fresh server process (``--serve N``) so RSS figures do not leak between runs;
the clients run in ``--client-procs`` other processes (2) and connect in batches of 250 per
process, each once the previous batch has its first responses (thousands of connects at once
overflow the listen backlog). Bounded: 180 s to get every client in sync, 60 s per round, 600 s
per N. Ratios are against N = 1 measured in the same run (p50: p99 of a handful of
single-client rounds is one sample).

Memory is also reported after ``malloc_trim`` (freed C heap given back), as glibc's C heap in
use and free-but-kept per client, after the rounds and after a trim following them. Server
settings are compared in the same run with ``--variant 'NAME opt:KEY=VALUE env:KEY=VALUE'``:
each N runs with the product's gRPC server options (``GRPC_SERVER_OPTIONS``) and then with each
variant's options over them and its environment (``MALLOC_ARENA_MAX``, ``GRPC_EXPERIMENTS``).

    .venv/bin/python -m bench.xds_fanout [--clients 1,100,1000] [--rounds 5] [--tracemalloc]
        [--loop uvloop|asyncio] [--py-spy DIR [--native]] [--delta] [--variant SPEC ...]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
CLUSTERS = 100
CHANGED_PER_ROUND = 10
RAMP_BATCH = 250  # clients a client process connects at once
RAMP_WAIT_S = 20.0  # at most this long for a batch's first responses before the next batch


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """``uvloop``: the loop ``ubiq serve`` runs on (when installed); ``asyncio``: the default."""
    if kind == "uvloop":
        from controlplane.gtm.dns.server import new_event_loop

        return new_event_loop()
    return asyncio.new_event_loop()


def _py_spy(pid: int, out: Path, native: bool) -> subprocess.Popen[bytes]:
    """Sample ``pid`` with py-spy (raw collapsed stacks) until SIGINT."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        raise SystemExit(f"--py-spy needs py-spy next to {sys.executable}: pip install py-spy")
    command = [str(exe), "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    command += ["--native"] if native else []
    return subprocess.Popen(
        [*command, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _stop_py_spy(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _c_heap() -> dict[str, int]:
    """glibc's view of the C heap (all arenas): bytes in use, free but kept, mmapped, arenas."""
    import ctypes
    import re

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
            )
        ]  # fmt: skip

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
        libc.open_memstream.restype = ctypes.c_void_p
        buf, size = ctypes.c_char_p(), ctypes.c_size_t()
        stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
        libc.malloc_info(0, ctypes.c_void_p(stream))
        libc.fclose(ctypes.c_void_p(stream))
        xml = (buf.value or b"").decode()
        libc.free(buf)
    except (OSError, AttributeError):
        return {}
    return {
        "in_use": info.uordblks + info.hblkhd,
        "free_kept": info.fordblks,
        "mmapped": info.hblkhd,
        "arenas": len(re.findall(r"<heap nr=", xml)),
    }


def _trim() -> None:
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(ctypes.c_size_t(0))


def _snapshot(round_no: int) -> Any:
    from controlplane.xds.resources import ENDPOINT, ROUTE
    from controlplane.xds.snapshot import Snapshot
    from tests.support.xds_resources import make_fleet, make_route

    resources = make_fleet(CLUSTERS)
    if round_no:
        resources[ROUTE]["main"] = make_route("main", "svc-0000", f"round-{round_no}")
        for i in range(CHANGED_PER_ROUND):
            cla = resources[ENDPOINT][f"svc-{i:04d}"]
            cla.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value = (  # type: ignore[attr-defined]
                20000 + round_no
            )
    return Snapshot.build(resources)


# -- clients (separate process) ---------------------------------------------------------


def _client_process(
    port: int,
    first: int,
    count: int,
    names: list[str],
    stop: Any,
    ready: Any,
    loop: str,
    delta: bool = False,
) -> None:
    _raise_fd_limit()
    with asyncio.Runner(loop_factory=lambda: _new_loop(loop)) as runner:
        runner.run(_clients(port, first, count, names, stop, ready, delta))


async def _clients(
    port: int, first: int, count: int, names: list[str], stop: Any, ready: Any, delta: bool
) -> None:
    import grpc
    from envoy.config.core.v3 import base_pb2
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

    from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE

    wanted = {CLUSTER: [], ENDPOINT: names, LISTENER: [], ROUTE: ["main"]}

    async def one(i: int, synced: asyncio.Event) -> None:
        node = base_pb2.Node(id=f"bench-{first + i}", cluster="bench")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for type_url, subscribed in wanted.items():
            queue.put_nowait(
                discovery_pb2.DeltaDiscoveryRequest(
                    node=node if type_url == CLUSTER else None,
                    type_url=type_url,
                    resource_names_subscribe=subscribed,
                )
                if delta
                else discovery_pb2.DiscoveryRequest(
                    node=node if type_url == CLUSTER else None,
                    type_url=type_url,
                    resource_names=subscribed,
                )
            )

        async def requests() -> AsyncIterator[Any]:
            while True:
                yield await queue.get()

        # its own connection, as every Envoy has: without this option gRPC's global subchannel
        # pool carries every channel of a process to the same target over one connection
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = (
                stub.DeltaAggregatedResources(requests())
                if delta
                else stub.StreamAggregatedResources(requests())
            )
            seen: set[str] = set()
            async for response in call:
                if not synced.is_set():
                    seen.add(response.type_url)
                    if len(seen) == len(wanted):
                        synced.set()
                queue.put_nowait(
                    discovery_pb2.DeltaDiscoveryRequest(
                        type_url=response.type_url, response_nonce=response.nonce
                    )
                    if delta
                    else discovery_pb2.DiscoveryRequest(
                        type_url=response.type_url,
                        resource_names=wanted[response.type_url],
                        version_info=response.version_info,
                        response_nonce=response.nonce,
                    )
                )

    # connect in batches, each once the previous one has its first responses: 5,000 connects
    # at once overflow the listen backlog, and gRPC's reconnect backoff then takes minutes
    tasks: list[asyncio.Task[None]] = []
    for start in range(0, count, RAMP_BATCH):
        synced = [asyncio.Event() for _ in range(start, min(count, start + RAMP_BATCH))]
        tasks += [asyncio.create_task(one(start + k, e)) for k, e in enumerate(synced)]
        waits = [asyncio.create_task(e.wait()) for e in synced]
        await asyncio.wait(waits, timeout=RAMP_WAIT_S)
        for w in waits:
            w.cancel()
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- server side (one process per N) -------------------------------------------------------


def _traced_growth(before: Any, after: Any, count: int, top: int = 15) -> dict[str, Any]:
    """Python-heap growth (tracemalloc) per client, by allocating line, largest first."""
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    rows = [
        {"where": str(s.traceback[0]), "bytes_per_client": s.size_diff / count,
         "blocks_per_client": s.count_diff / count}
        for s in stats[:top]
    ]  # fmt: skip
    return {"python_bytes_per_client": total / count, "top": rows}


@dataclass(frozen=True)
class Options:
    rounds: int = 5
    trace: bool = False
    procs: int = 2
    loop: str = "uvloop"
    py_spy: str = ""  # directory for py-spy profiles of the rounds (server and clients)
    native: bool = False  # py-spy --native: C frames (gRPC core) too
    delta: bool = False  # the clients speak Delta xDS instead of SotW
    variant: str = "current"  # name of the server settings below
    server_options: dict[str, int | str] = field(default_factory=dict)  # over the product's
    server_env: dict[str, str] = field(default_factory=dict)  # e.g. MALLOC_ARENA_MAX


def ack_tracker(target: dict[str, str], done: dict[int, float]) -> Any:
    """A StatusRegistry that records in ``done`` when each stream has ACKed every type's
    version in ``target`` (the moment the bench's "all ACKed" counts)."""
    from controlplane.xds.events import Event
    from controlplane.xds.status import StatusRegistry

    class Tracker(StatusRegistry):
        def record(self, stream_id: int, event: Event) -> None:
            super().record(stream_id, event)
            if stream_id not in done:
                acked = self.acked_versions(stream_id)
                if all(acked.get(t) == v for t, v in target.items()):
                    done[stream_id] = time.perf_counter()

    return Tracker()


async def _serve(count: int, opts: Options) -> dict[str, Any]:
    from controlplane.xds.cache import SnapshotCache
    from controlplane.xds.node import group_key
    from controlplane.xds.resources import ORDER
    from controlplane.xds.server import XdsServer

    group = group_key("bench")
    target: dict[str, str] = {}
    done: dict[int, float] = {}

    started = time.perf_counter()
    first = _snapshot(0)
    build_seconds = time.perf_counter() - started
    cache, status = SnapshotCache(), ack_tracker(target, done)
    cache.set_snapshot(group, first)
    server = XdsServer(cache, status=status)
    # without variant options, start() as older trees have it (run against main's controlplane/)
    address = "127.0.0.1:0"
    port = await (
        server.start(address, opts.server_options) if opts.server_options else server.start(address)
    )
    target.update({t: first.type_version(t) for t in ORDER})
    gc.collect()
    _trim()  # as `ubiq serve` does every minute: what the snapshot build freed is not counted
    rss_before, heap_before = _rss_bytes(), _c_heap()
    rounds, trace, procs = opts.rounds, opts.trace, opts.procs
    if trace:
        tracemalloc.start()
        traced_before = tracemalloc.take_snapshot()

    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    names = sorted(first.get(ORDER[1]).entries)
    shares = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
    readies = [ctx.Event() for _ in shares]  # held here: a dropped Event's semaphore is gone
    firsts = [sum(shares[:i]) for i in range(len(shares))]
    clients = [
        ctx.Process(
            target=_client_process,
            args=(port, first, share, names, stop, ready, opts.loop, opts.delta),
            daemon=True,  # a failed run must not wait forever for its clients
        )
        for first, share, ready in zip(firsts, shares, readies, strict=True)
        if share
    ]
    for proc in clients:
        proc.start()

    async def until_all(deadline_s: float) -> None:
        deadline = time.perf_counter() + deadline_s
        while len(done) < count or len(status) < count:
            if time.perf_counter() > deadline:
                stop.set()
                raise TimeoutError(
                    f"{len(done)}/{count} clients in sync, {len(status)} connected"
                    f" after {deadline_s} s"
                )
            await asyncio.sleep(0.002)

    connect_started = time.perf_counter()
    await until_all(180)
    connect_seconds = time.perf_counter() - connect_started
    await asyncio.sleep(0.5)
    gc.collect()
    rss_after, heap_after = _rss_bytes(), _c_heap()
    _trim()
    rss_trimmed, heap_trimmed = _rss_bytes(), _c_heap()
    traced: dict[str, Any] = {}
    if trace:
        traced = _traced_growth(traced_before, tracemalloc.take_snapshot(), count)
        tracemalloc.stop()

    latencies: list[float] = []
    all_acked: list[float] = []
    spies: list[subprocess.Popen[bytes]] = []
    if opts.py_spy:
        out = Path(opts.py_spy)
        os.makedirs(out, exist_ok=True)
        spies.append(_py_spy(os.getpid(), out / f"server-{count}.txt", opts.native))
        spies += [
            _py_spy(p.pid or 0, out / f"client-{count}-{i}.txt", opts.native)
            for i, p in enumerate(clients)
        ]
        await asyncio.sleep(2)  # py-spy attaches
    clients_cpu_started = sum(_cpu_seconds(p.pid or 0) for p in clients)
    cpu_started = time.process_time()
    profile = os.environ.get("XDS_FANOUT_PROFILE")
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    for round_no in range(1, rounds + 1):
        snap = _snapshot(round_no)
        done.clear()
        target.clear()
        target.update({t: snap.type_version(t) for t in ORDER})
        t0 = time.perf_counter()
        cache.set_snapshot(group, snap)
        await until_all(60)
        latencies.extend(t - t0 for t in done.values())
        all_acked.append(max(done.values()) - t0)
        await asyncio.sleep(0.2)

    server_cpu_s = time.process_time() - cpu_started
    gc.collect()
    rss_rounds, heap_rounds = _rss_bytes(), _c_heap()  # per-stream state after the pushes
    trim_started = time.perf_counter()
    _trim()  # what `ubiq serve`'s periodic trim gives back after the pushes, and what it costs
    trim_seconds = time.perf_counter() - trim_started
    rss_rounds_trimmed = _rss_bytes()
    clients_cpu_s = sum(_cpu_seconds(p.pid or 0) for p in clients) - clients_cpu_started
    _stop_py_spy(spies)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile or "")
    stop.set()
    for proc in clients:
        proc.join(30)
    await server.stop(0)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "clients": count,
        "client_processes": len(clients),
        "rounds": rounds,
        "snapshot_build_s": build_seconds,
        "initial_sync_s": connect_seconds,
        "push_p50_s": statistics.median(latencies),
        "server_cpu_per_round_s": server_cpu_s / rounds,
        "clients_cpu_per_round_s": clients_cpu_s / rounds,
        "loop": opts.loop,
        "delta": opts.delta,
        "load_average": os.getloadavg(),
        "push_p99_s": quantiles[98],
        "all_acked_max_s": max(all_acked),
        "rss_before_mib": rss_before / 2**20,
        "rss_after_mib": rss_after / 2**20,
        "bytes_per_client": (rss_after - rss_before) / count,
        "bytes_per_client_trimmed": (rss_trimmed - rss_before) / count,
        "variant": opts.variant,
        "server_options": opts.server_options,
        "server_env": opts.server_env,
        "c_heap_before": heap_before,
        "c_heap_after": heap_after,
        "c_heap_trimmed": heap_trimmed,
        "bytes_per_client_after_rounds": (rss_rounds - rss_before) / count,
        "c_heap_after_rounds": heap_rounds,
        "bytes_per_client_after_rounds_trimmed": (rss_rounds_trimmed - rss_before) / count,
        "trim_after_rounds_s": trim_seconds,
        **({"tracemalloc": traced} if trace else {}),
    }


def _variant(opts: Options, spec: str) -> Options:
    """``NAME opt:KEY=VALUE env:KEY=VALUE ...``: server settings to compare with the current."""
    name, *tokens = spec.split()
    options: dict[str, int | str] = {}
    env: dict[str, str] = {}
    for token in tokens:
        kind, _, setting = token.partition(":")
        key, sep, value = setting.partition("=")
        if kind not in ("opt", "env") or not sep:
            raise SystemExit(f"--variant {spec!r}: {token!r} is not opt:KEY=VALUE or env:KEY=VALUE")
        if kind == "env":
            env[key] = value
        else:
            options[key] = int(value) if value.lstrip("-").isdigit() else value
    return replace(opts, variant=name, server_options=options, server_env=env)


def _run_one(count: int, opts: Options) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.xds_fanout", "--serve", str(count)]
    command += ["--options", json.dumps(asdict(opts))]
    out = subprocess.run(
        command,
        env={**os.environ, **opts.server_env},
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["(no output)"]
        print(f"{count} clients: failed: {tail[0]}", file=sys.stderr)
        return {"clients": count, "failed": tail[0]}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="1,100,1000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of the server and the clients (uvloop: what `ubiq serve` runs on)",
    )
    parser.add_argument(
        "--py-spy",
        default="",
        metavar="DIR",
        help="profile the rounds with py-spy (server and each client process) into DIR"
        " (not a dependency: .venv/bin/pip install py-spy)",
    )
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    parser.add_argument(
        "--delta", action="store_true", help="clients speak Delta xDS (only changes are sent)"
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=2,
        help="processes the simulated clients are spread over (one event loop each)",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also report where the server's Python heap grows per client (slower, and the"
        " latency figures of such a run are not comparable)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="'NAME [opt:KEY=VALUE] [env:KEY=VALUE] ...'",
        help="also run each N with these gRPC server options (over the product's) and server"
        " environment, right after the current settings (repeatable)",
    )
    args = parser.parse_args(argv)
    _raise_fd_limit()
    if args.serve is not None:
        opts = Options(**json.loads(args.options))
        with asyncio.Runner(loop_factory=lambda: _new_loop(opts.loop)) as runner:
            result = runner.run(_serve(args.serve, opts))
        print(json.dumps(result), flush=True)
        return 0

    opts = Options(
        rounds=args.rounds,
        trace=args.tracemalloc,
        procs=args.client_procs,
        loop=args.loop,
        py_spy=args.py_spy,
        native=args.native,
        delta=args.delta,
    )
    counts = [int(c) for c in args.clients.split(",")]
    variants = [opts] + [_variant(opts, spec) for spec in args.variant]
    rows = [_run_one(count, v) for count in counts for v in variants]
    base = rows[0]
    current = {row["clients"]: row for row in rows if row.get("variant", "current") == "current"}
    print(
        f"xDS fan-out: {CLUSTERS} EDS clusters; each round changes RDS + {CHANGED_PER_ROUND} CLAs"
    )
    header = (
        "clients", "variant", "initial sync s", "push p50 ms", "push p99 ms", "last ACK ms",
        "p50 vs N=1", "RSS MiB", "KiB/client", "KiB/client trimmed", "vs current",
        "KiB/client after rounds", "trimmed", "trim ms",
        "C heap in use KiB/client", "C heap free kept KiB/client", "arenas",
        "server CPU ms/round", "vs current", "clients CPU ms/round",
    )  # fmt: skip
    print(" | ".join(header))
    for row in rows:
        if "failed" in row:
            print(f"{row['clients']} | failed: {row['failed']}")
            continue
        n, ref = row["clients"], current.get(row["clients"], row)
        after, before = row["c_heap_after"], row["c_heap_before"]
        print(
            " | ".join(
                [
                    f"{n}",
                    row["variant"],
                    f"{row['initial_sync_s']:.2f}",
                    f"{row['push_p50_s'] * 1e3:.1f}",
                    f"{row['push_p99_s'] * 1e3:.1f}",
                    f"{row['all_acked_max_s'] * 1e3:.1f}",
                    f"{row['push_p50_s'] / base['push_p50_s']:.1f}x",
                    f"{row['rss_after_mib']:.1f}",
                    f"{row['bytes_per_client'] / 1024:.1f}" if n > 1 else "-",
                    f"{row['bytes_per_client_trimmed'] / 1024:.1f}" if n > 1 else "-",
                    f"{row['bytes_per_client'] / ref['bytes_per_client']:.2f}x" if n > 1 else "-",
                    f"{row['bytes_per_client_after_rounds'] / 1024:.1f}" if n > 1 else "-",
                    f"{row['bytes_per_client_after_rounds_trimmed'] / 1024:.1f}" if n > 1 else "-",
                    f"{row['trim_after_rounds_s'] * 1e3:.1f}",
                    f"{(after.get('in_use', 0) - before.get('in_use', 0)) / n / 1024:.1f}",
                    f"{(after.get('free_kept', 0) - before.get('free_kept', 0)) / n / 1024:.1f}",
                    f"{after.get('arenas', 0)}",
                    f"{row['server_cpu_per_round_s'] * 1e3:.0f}",
                    f"{row['server_cpu_per_round_s'] / ref['server_cpu_per_round_s']:.2f}x",
                    f"{row['clients_cpu_per_round_s'] * 1e3:.0f}",
                ]
            )
        )
    for row in rows:
        traced = row.get("tracemalloc")
        if traced:
            print(f"\n{row['clients']} clients: Python heap "
                  f"{traced['python_bytes_per_client'] / 1024:.1f} KiB/client (tracemalloc), by line:")  # fmt: skip
            for t in traced["top"]:
                print(
                    f"  {t['bytes_per_client']:8.0f} B {t['blocks_per_client']:6.1f} blocks  {t['where']}"
                )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "xds_fanout.json").write_text(json.dumps({"baseline": base, "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
