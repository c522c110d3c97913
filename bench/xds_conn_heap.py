"""Where the C heap of a connected ADS client goes: the xDS server under heaptrack, twice.

Each run serves bench.xds_fanout's snapshot in a process started under ``heaptrack``, connects N
simulated ADS clients (one connection each) from another process, waits until they are in
sync, then ends the server with ``os._exit`` so that every connection's allocations are still
live ("leaked") in heaptrack's record. The difference between two runs (``--clients 100,500``)
per extra client, by the library that called malloc, is the per-connection C heap; glibc's own
count (``mallinfo2``) is printed beside it. Needs heaptrack (apt: heaptrack); not part of
``make bench``.

    .venv/bin/python -m bench.xds_conn_heap [--clients 100,500] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SITE = re.compile(
    r"^([\d.]+)([KMG]?) leaked over (\d+) calls from\n(.+)\n\s*(?:at .+\n)?\s*in (.+)$", re.M
)
UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _exists(path: Path) -> bool:
    return path.exists()


async def _serve(ready_file: Path, stop_file: Path) -> None:
    from bench.xds_fanout import _c_heap, _snapshot, _trim
    from controlplane.xds.cache import SnapshotCache
    from controlplane.xds.node import group_key
    from controlplane.xds.server import XdsServer

    cache = SnapshotCache()
    cache.set_snapshot(group_key("bench"), _snapshot(0))
    port = await XdsServer(cache).start("127.0.0.1:0")
    _trim()
    before = _c_heap()
    _write(ready_file, str(port))
    async with asyncio.timeout(300):
        while not _exists(stop_file):
            await asyncio.sleep(0.2)
    after = _c_heap()
    print(json.dumps({"before": before, "after": after}), flush=True)
    os._exit(0)  # no teardown: the connections' allocations stay live in the record


def _connect(port: int, count: int) -> tuple[Any, mp.process.BaseProcess]:
    """Start ``count`` clients in another process; returns once they are in sync (stop event,
    process)."""
    from bench.xds_fanout import _client_process, _snapshot
    from controlplane.xds.resources import ORDER

    names = sorted(_snapshot(0).get(ORDER[1]).entries)
    ctx = mp.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Event()
    proc = ctx.Process(
        target=_client_process,
        args=(port, 0, count, names, stop, ready, "uvloop", False),
        daemon=True,
    )
    proc.start()
    if not ready.wait(180):
        stop.set()
        raise TimeoutError(f"{count} clients not connected in 180 s")
    time.sleep(2)  # the last batch's first responses are written
    return stop, proc


def _by_library(record: Path) -> dict[str, tuple[float, int]]:
    out = subprocess.run(
        ["heaptrack_print", "-f", str(record), "-l", "1", "-p", "0", "-a", "0", "-T", "0",
         "-n", "40", "-s", "0"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    totals: dict[str, tuple[float, int]] = {}
    for size, unit, calls, _, where in SITE.findall(out):
        lib = Path(where.strip()).name or where.strip()
        bytes_, count = totals.get(lib, (0.0, 0))
        totals[lib] = (bytes_ + float(size) * UNITS[unit], count + int(calls))
    return totals


def _run(count: int, out: Path) -> tuple[dict[str, tuple[float, int]], dict[str, dict[str, int]]]:
    work = Path(tempfile.mkdtemp(prefix="xds-heap-"))
    ready, stop = work / "port", work / "stop"
    record = out / f"server-{count}"
    command = ["heaptrack", "-o", str(record), sys.executable, "-m", "bench.xds_conn_heap"]
    command += ["--serve", str(ready), str(stop)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    clients: tuple[Any, mp.process.BaseProcess] | None = None
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server under heaptrack did not start")
            time.sleep(0.2)
        clients = _connect(int(ready.read_text()), count)
        stop.touch()
        stdout, _ = server.communicate(timeout=300)
    finally:
        if clients is not None:
            clients[0].set()
            clients[1].join(30)
        if server.poll() is None:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    heap = json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])
    return _by_library(Path(f"{record}.zst")), heap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="100,500")
    parser.add_argument("--out", default="", help="where heaptrack's records go (a temp dir)")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(Path(args.serve[0]), Path(args.serve[1])))
        return 0
    if shutil.which("heaptrack") is None:
        print("heaptrack not found (apt-get install heaptrack)", file=sys.stderr)
        return 2
    low, high = (int(c) for c in args.clients.split(","))
    out = Path(args.out or tempfile.mkdtemp(prefix="xds-heaptrack-"))
    out.mkdir(parents=True, exist_ok=True)
    (libs_low, heap_low), (libs_high, heap_high) = _run(low, out), _run(high, out)
    extra = high - low

    def in_use(heap: dict[str, dict[str, int]]) -> int:
        return heap["after"]["in_use"] - heap["before"]["in_use"]

    print(
        f"C heap in use per extra client (mallinfo2): {(in_use(heap_high) - in_use(heap_low)) / extra / 1024:.1f} KiB"
    )
    print("live allocations per extra client, by the library that called malloc (heaptrack):")
    for lib in sorted(libs_high, key=lambda k: -libs_high[k][0]):
        bytes_high, calls_high = libs_high[lib]
        bytes_low, calls_low = libs_low.get(lib, (0.0, 0))
        per = (bytes_high - bytes_low) / extra
        if abs(per) >= 50:
            print(
                f"  {per / 1000:7.2f} KB {(calls_high - calls_low) / extra:7.1f} allocations  {lib}"
            )
    print(f"records: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
