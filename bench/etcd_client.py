"""etcd client choice: the JSON gRPC gateway over httpx (what Ubiq uses) against aetcd (asyncio gRPC).

    .venv/bin/python -m bench.etcd_client [--puts 500] [--watches 200]

Starts one etcd member on loopback (Debian ``etcd-server``) and measures, per client:
sequential puts/s, sequential point gets/s, one range over 1,000 keys, and watch latency
(a put by another connection until the watcher sees the event: p50/p99). The baseline is the
gateway; aetcd's figures are ratios from the same run. aetcd is measured only when installed
(``pip install aetcd``); it is not a dependency of Ubiq.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from controlplane.etcd.client import EtcdClient, range_body
from controlplane.etcd.process import start_etcd_cluster

RESULTS = Path(__file__).parent / "results"
RANGE_KEYS = 1000
COLUMNS = ("puts_per_s", "gets_per_s", "range_1000_ms", "watch_p50_ms", "watch_p99_ms")
HEADERS = ("puts/s", "gets/s", "range1k ms", "watch p50", "watch p99")


async def _timed(n: int, op: Callable[[int], Awaitable[object]]) -> float:
    started = time.perf_counter()
    for i in range(n):
        await op(i)
    return n / (time.perf_counter() - started)


async def _watch_latency(
    n: int,
    subscribe: Callable[[], Awaitable[Any]],
    put: Callable[[int], Awaitable[object]],
) -> list[float]:
    """Milliseconds from a put to its event at the watcher, ``n`` times, one at a time."""
    seen: asyncio.Queue[float] = asyncio.Queue()
    events = await subscribe()

    async def follow() -> None:
        async for _ in events:
            seen.put_nowait(time.perf_counter())

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    latencies: list[float] = []
    for i in range(n):
        sent = time.perf_counter()
        await put(i)
        got = await asyncio.wait_for(seen.get(), 5)
        latencies.append((got - sent) * 1000)
    follower.cancel()
    return latencies


async def gateway(endpoint: str, puts: int, watches: int) -> dict[str, float]:
    client = EtcdClient([endpoint])
    watcher = EtcdClient([endpoint])
    put_rate = await _timed(puts, lambda i: client.put(f"/b/gw/k{i}", b"x" * 200))
    get_rate = await _timed(puts, lambda i: client.range(f"/b/gw/k{i % puts}"))
    for i in range(RANGE_KEYS):
        await client.put(f"/b/gwr/k{i:04}", b"x" * 500)
    started = time.perf_counter()
    result = await client.range("/b/gwr/", prefix=True)
    range_ms = (time.perf_counter() - started) * 1000
    assert len(result.kvs) == RANGE_KEYS

    async def subscribe() -> Any:
        async def events() -> Any:
            async for batch in watcher.watch("/b/gww/", prefix=True):
                for event in batch.events:
                    yield event

        return events()

    latency = await _watch_latency(watches, subscribe, lambda i: client.put("/b/gww/k", str(i)))
    await client.aclose()
    await watcher.aclose()
    return _row(put_rate, get_rate, range_ms, latency)


async def aetcd_client(host: str, port: int, puts: int, watches: int) -> dict[str, float] | None:
    try:
        aetcd: Any = importlib.import_module("aetcd")
    except ImportError:
        return None
    client = aetcd.Client(host=host, port=port)
    watcher = aetcd.Client(host=host, port=port)
    put_rate = await _timed(puts, lambda i: client.put(f"/b/ae/k{i}".encode(), b"x" * 200))
    get_rate = await _timed(puts, lambda i: client.get(f"/b/ae/k{i % puts}".encode()))
    for i in range(RANGE_KEYS):
        await client.put(f"/b/aer/k{i:04}".encode(), b"x" * 500)
    started = time.perf_counter()
    got = list(await client.get_prefix(b"/b/aer/"))
    range_ms = (time.perf_counter() - started) * 1000
    assert len(got) == RANGE_KEYS

    async def subscribe() -> Any:
        return await watcher.watch_prefix(b"/b/aew/")

    latency = await _watch_latency(
        watches, subscribe, lambda i: client.put(b"/b/aew/k", str(i).encode())
    )
    await client.close()
    await watcher.close()
    return _row(put_rate, get_rate, range_ms, latency)


def _row(
    put_rate: float, get_rate: float, range_ms: float, latency: list[float]
) -> dict[str, float]:
    latency.sort()
    return {
        "puts_per_s": round(put_rate),
        "gets_per_s": round(get_rate),
        "range_1000_ms": round(range_ms, 1),
        "watch_p50_ms": round(statistics.median(latency), 2),
        "watch_p99_ms": round(latency[int(len(latency) * 0.99) - 1], 2),
    }


def raw_gateway_gets(port: int, n: int) -> float:
    """Point gets/s over one keep-alive connection with the standard library, no asyncio:
    what the gateway itself costs, without httpx's asyncio transport."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    body = json.dumps(range_body("/b/gw/k0"))
    started = time.perf_counter()
    for _ in range(n):
        connection.request("POST", "/v3/kv/range", body, {"content-type": "application/json"})
        connection.getresponse().read()
    rate = n / (time.perf_counter() - started)
    connection.close()
    return round(rate)


async def run(puts: int, watches: int) -> dict[str, dict[str, float] | None]:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = start_etcd_cluster(Path(tmp), 1)
        try:
            member = cluster.members[0]
            return {
                "gateway-httpx": await gateway(member.endpoint, puts, watches),
                "aetcd-grpc": await aetcd_client("127.0.0.1", member.client_port, puts, watches),
                "gateway-raw": {"gets_per_s": raw_gateway_gets(member.client_port, puts)},
            }
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--puts", type=int, default=500)
    parser.add_argument("--watches", type=int, default=200)
    args = parser.parse_args()
    rows = asyncio.run(run(args.puts, args.watches))
    base = rows["gateway-httpx"]
    assert base is not None
    print(
        f"{'client':16} {'puts/s':>8} {'gets/s':>8} {'range1k ms':>10} {'watch p50':>10} {'p99':>8}"
    )
    for name, row in rows.items():
        if row is None:
            print(f"{name:16} not installed (pip install aetcd to compare)")
            continue
        cells = [row.get(k) for k in COLUMNS]
        print(f"{name:16} " + " ".join(f"{'-' if c is None else c:>10}" for c in cells))
        if row is not base:
            ratios = {k: round(row[k] / base[k], 2) for k in row}
            print(f"{'  ratio to gw':16} {ratios}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "etcd_client.json"
    out.write_text(
        json.dumps({"machine": platform.node(), "args": vars(args), "results": rows}, indent=2)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
