"""DNS answer latency through `ubiq serve` while the answer table changes, vs idle (same run).

    .venv/bin/python -m bench.dns_rebuild_latency [--names 100] [--groups 200] [--rate 1500]
        [--seconds 8] [--workers auto 0]

For each ``--workers`` value, one ``ubiq serve --dns-workers W`` on a generated policy (``--names``
geo GlobalServices over three regions, ``--groups`` client groups of one /24 each; the first name
health-checks two real HTTP backends, the others have no health check) is queried by an
open-loop asyncio UDP client: ``--rate`` queries per second spread over 4 sockets, each with an
EDNS Client Subnet from a different group, names drawn round-robin; every query is timed from
send to answer, and one unanswered after 2 s is lost. Three phases of ``--seconds`` each:

* ``idle``: nothing changes;
* ``health``: the first name's preferred backend fails and recovers every 0.4 s (probes every
  200 ms, thresholds 1): each change rebuilds incrementally (one name);
* ``policy``: the policy file is rewritten every 1.5 s (one TTL changes): each change is a model
  reload and a full rebuild of every name.

Reported per phase: the changes made (health flips, policy writes), answered, lost, p50/p99/max
latency, and p99 over the idle phase's p99 (the target: within 2x); the table rebuilds
(``ubiq_gtm_rebuilds_total``) are counted over the whole run, scraped before the load starts and
after it ends (a scrape of /metrics renders one ``ubiq_gtm_answer`` series per name x group x
address, which would stall an in-process DNS server inside a phase).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dns.edns
import dns.message
import httpx

from tests.support.backends import Backend
from tests.support.poll import wait_until
from tests.support.procs import free_port, free_udp_tcp_port, running

RESULTS = Path(__file__).parent / "results"
REGIONS = ("eu-west", "us-west", "cn-east")
EU, US = "127.0.0.21", "127.0.0.22"
LOST_AFTER = 2.0
SOCKETS = 4

CLUSTERS = "".join(
    f"apiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {{name: {r}}}\nspec: {{region: {r}}}\n---\n"
    for r in REGIONS
)
SERVICE = """apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {name: app}
spec:
  ports: [{port: 8080}]
  endpoints:
  - {cluster: eu-west, address: 127.0.0.21, port: 8080}
---
"""


def policy_text(names: int, groups: int, eu_port: int, us_port: int, ttl: int) -> str:
    docs = [CLUSTERS, SERVICE]
    for n in range(names):
        lines = [
            "apiVersion: ubiq.io/v1alpha1",
            "kind: GlobalService",
            f"metadata: {{name: n{n}}}",
            "spec:",
            f"  name: n{n}.gtm.example",
            "  zone: gtm.example",
            "  service: app",
            "  strategy: geo",
            f"  ttl: {ttl if n == names - 1 else 30}s",
            "  targets:",
        ]
        if n == 0:
            lines += [
                f"  - {{cluster: eu-west, address: {EU}, port: {eu_port}}}",
                f"  - {{cluster: us-west, address: {US}, port: {us_port}}}",
                "  healthCheck: {http: {path: /healthz}, interval: 200ms, timeout: 200ms,"
                " unhealthyThreshold: 1, healthyThreshold: 1}",
                "  clientGroups:",
            ]
            lines += [
                f"  - {{name: g{g}, cidrs: [10.{g // 256}.{g % 256}.0/24],"
                f" region: {REGIONS[g % len(REGIONS)]}}}"
                for g in range(groups)
            ]
        else:
            lines += [
                f"  - {{cluster: {r}, address: 127.1.{n}.{j + 1}, port: 443}}"
                for j, r in enumerate(REGIONS)
            ]
        docs.append("\n".join(lines) + "\n---\n")
    return "".join(docs)


class _Client(asyncio.DatagramProtocol):
    def __init__(self, index: int) -> None:
        self.index = index
        self.sent: dict[int, float] = {}
        self.timings: list[tuple[float, float]] = []  # (sent at, latency)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        sent = self.sent.pop(int.from_bytes(data[:2]), None)
        if sent is not None:
            self.timings.append((sent, time.perf_counter() - sent))


def queries(names: int, groups: int, index: int) -> list[bytes]:
    """Wire queries for socket ``index``: every name, with one group's subnet as ECS."""
    group = (index * 53) % groups
    ecs = dns.edns.ECSOption(f"10.{group // 256}.{group % 256}.0", 24)
    return [
        dns.message.make_query(f"n{n}.gtm.example", "A", use_edns=0, options=[ecs]).to_wire()
        for n in range(names)
    ]


async def drive(port: int, args: argparse.Namespace, seconds: float) -> list[_Client]:
    """Open loop: ``args.rate`` queries/s over SOCKETS sockets for ``seconds``."""
    loop = asyncio.get_running_loop()
    clients = []
    for i in range(SOCKETS):
        _, protocol = await loop.create_datagram_endpoint(
            functools.partial(_Client, i), remote_addr=("127.0.0.1", port)
        )
        clients.append(protocol)
    wires = [queries(args.names, args.groups, i) for i in range(SOCKETS)]
    interval = 1 / args.rate
    start = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) / interval)
        while sent < due:
            client = clients[sent % SOCKETS]
            qid = (sent // SOCKETS) % 65536
            wire = wires[client.index][(sent // SOCKETS) % args.names]
            client.sent[qid] = time.perf_counter()
            assert client.transport is not None
            client.transport.sendto(qid.to_bytes(2) + wire[2:])
            sent += 1
        await asyncio.sleep(0.001)
    await asyncio.sleep(LOST_AFTER)
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    return clients


def stats(clients: list[_Client], begin: float, end: float) -> dict[str, float]:
    lat = sorted(lat for c in clients for sent, lat in c.timings if begin <= sent < end)
    lost = sum(1 for c in clients for sent in c.sent.values() if begin <= sent < end)
    if not lat:
        return {"answered": 0, "lost": lost}
    return {
        "answered": len(lat),
        "lost": lost,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "max_ms": lat[-1] * 1000,
    }


def rebuilds(api: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{api}/metrics", timeout=60).text
    match = re.search(r"^ubiq_gtm_rebuilds_total ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def answers_eu(api: int) -> bool:
    rows = httpx.get(f"http://127.0.0.1:{api}/v1/gtm/health", timeout=2).json()
    return bool(rows) and all(r["healthy"] is True for r in rows)


def run_one(workers: str, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    eu, us = Backend("eu", EU).start(), Backend("us", US).start()
    root = workdir / f"policy-{workers}"
    root.mkdir()
    policy = root / "policy.yaml"
    policy.write_text(policy_text(args.names, args.groups, eu.port, us.port, 30))
    dns_port, api = free_udp_tcp_port(), free_port()
    argv = [
        sys.executable, "-m", "controlplane.cli", "--log-level", "warning", "serve", str(root),
        "--xds", "127.0.0.1:0", "--api", f"127.0.0.1:{api}", "--dns", f"127.0.0.1:{dns_port}",
        "--dns-workers", workers, "--debounce-ms", "20",
    ]  # fmt: skip
    phases: dict[str, tuple[float, float, int]] = {}  # name -> (start, end, changes made)
    counted: dict[str, float] = {}
    try:
        log = workdir / f"ubiq-{workers}.log"
        with running(argv, log=log) as proc:

            def up() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"ubiq serve exited: {log.read_text()[-2000:]}")
                return answers_eu(api)

            wait_until(up, 120, "ubiq serve up, the backends healthy")

            async def main() -> list[_Client]:
                loop = asyncio.get_running_loop()
                seconds = args.seconds
                counted["before"] = await asyncio.to_thread(rebuilds, api)  # outside the phases
                load = loop.create_task(drive(dns_port, args, 3 * seconds))
                t0 = time.perf_counter()
                await asyncio.sleep(seconds)
                t1 = time.perf_counter()
                phases["idle"] = (t0, t1, 0)
                flips = 0
                while time.perf_counter() - t1 < seconds:
                    eu.status = 503 if eu.status == 200 else 200
                    flips += 1
                    await asyncio.sleep(0.4)
                eu.status = 200
                t2 = time.perf_counter()
                phases["health"] = (t1, t2, flips)
                ttl, writes = 30, 0
                while time.perf_counter() - t2 < seconds:
                    ttl = 31 if ttl == 30 else 30
                    text = policy_text(args.names, args.groups, eu.port, us.port, ttl)
                    await asyncio.to_thread(policy.write_text, text)
                    writes += 1
                    await asyncio.sleep(1.5)
                t3 = time.perf_counter()
                phases["policy"] = (t2, t3, writes)
                clients = await load
                counted["after"] = await asyncio.to_thread(rebuilds, api)
                return clients

            clients = asyncio.run(main())
    finally:
        eu.close()
        us.close()
    out: dict[str, object] = {}
    idle_p99 = 0.0
    for name, (begin, end, count) in phases.items():
        row: dict[str, float] = {**stats(clients, begin, end), "changes": count}
        if name == "idle":
            idle_p99 = row.get("p99_ms", 0.0)
        row["p99_over_idle"] = row.get("p99_ms", float("nan")) / idle_p99 if idle_p99 else 0.0
        out[name] = row
    out["rebuilds"] = counted["after"] - counted["before"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--names", type=int, default=100)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--rate", type=int, default=1500, help="queries per second, in all")
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase")
    parser.add_argument("--workers", nargs="+", default=["auto", "0"])
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ubiq-rebuild-") as tmp:
        for workers in args.workers:
            rows = run_one(workers, args, Path(tmp))
            results[f"--dns-workers {workers}"] = rows
            print(f"ubiq serve --dns-workers {workers}")
            print(
                f"  {'phase':8} {'changes':>8} {'answered':>9} {'lost':>5} "
                f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'p99/idle':>8}"
            )
            for phase, row in rows.items():
                if phase == "rebuilds":
                    print(f"  table rebuilds during the run: {row}")
                    continue
                r: dict[str, float] = row  # type: ignore[assignment]
                print(
                    f"  {phase:8} {r['changes']:>8.0f} {r['answered']:>9.0f} {r['lost']:>5.0f} "
                    f"{r.get('p50_ms', float('nan')):>7.2f} {r.get('p99_ms', float('nan')):>7.2f} "
                    f"{r.get('max_ms', float('nan')):>7.1f} {r['p99_over_idle']:>7.2f}x",
                    flush=True,
                )
    RESULTS.mkdir(exist_ok=True)
    out = {"args": vars(args), "results": results, "time": time.time()}
    (RESULTS / "dns_rebuild_latency.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
