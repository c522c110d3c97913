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
import contextlib
import functools
import io
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import dns.edns
import dns.message
import httpx

from tests.support.poll import wait_until
from tests.support.procs import free_port, free_udp_tcp_port, running

RESULTS = Path(__file__).parent / "results"
REGIONS = ("eu-west", "us-west", "cn-east")
LOST_AFTER = 2.0
SOCKETS = 4

CLUSTERS = "".join(
    f"apiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {{name: {r}}}\nspec: {{region: {r}}}\n---\n"
    for r in REGIONS
)


def target_host(name: int, region: int) -> str:
    """Name ``name``'s target in ``REGIONS[region]``: an address of its own."""
    return f"127.1.{name}.{region + 1}"


def policy_text(names: int, groups: int, ports: dict[str, int], ttl: int) -> str:
    """``names`` geo GlobalServices, each over a Service of its own and three health-checked
    targets of its own; the first name declares the ``groups`` client groups (one /24 each)."""
    docs = [CLUSTERS]
    for n in range(names):
        hosts = [target_host(n, j) for j in range(len(REGIONS))]
        docs.append(
            "apiVersion: ubiq.io/v1alpha1\nkind: Service\n"
            f"metadata: {{name: app{n}}}\nspec:\n  ports: [{{port: 8080}}]\n  endpoints:\n"
            + "".join(
                f"  - {{cluster: {r}, address: {h}, port: 8080}}\n"
                for r, h in zip(REGIONS, hosts, strict=True)
            )
            + "---\n"
        )
        check = (
            "interval: 200ms, timeout: 200ms, unhealthyThreshold: 1, healthyThreshold: 1"
            if n == 0
            else "interval: 5s, timeout: 1s"
        )
        lines = [
            "apiVersion: ubiq.io/v1alpha1",
            "kind: GlobalService",
            f"metadata: {{name: n{n}}}",
            "spec:",
            f"  name: n{n}.gtm.example",
            "  zone: gtm.example",
            f"  service: app{n}",
            "  strategy: geo",
            f"  ttl: {ttl}s",
            "  targets:",
            *(
                f"  - {{cluster: {r}, address: {h}, port: {ports[h]}}}"
                for r, h in zip(REGIONS, hosts, strict=True)
            ),
            f"  healthCheck: {{http: {{path: /healthz}}, {check}}}",
        ]
        if n == 0:
            lines.append("  clientGroups:")
            lines += [
                f"  - {{name: g{g}, cidrs: [10.{g // 256}.{g % 256}.0/24],"
                f" region: {REGIONS[g % len(REGIONS)]}}}"
                for g in range(groups)
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


def all_healthy(api: int, targets: int) -> bool:
    rows = httpx.get(f"http://127.0.0.1:{api}/v1/gtm/health", timeout=5).json()
    return len(rows) == targets and all(r["healthy"] is True for r in rows)


@contextlib.contextmanager
def health_backends(hosts: list[str], log: Path) -> Iterator[tuple[dict[str, int], IO[str]]]:
    """The targets' health endpoints in their own process: (ports by host, its control pipe)."""
    argv = [sys.executable, "-m", "bench._health_backends", *hosts]
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdin is not None and proc.stdout is not None
        control = io.TextIOWrapper(proc.stdin, line_buffering=True)
        try:
            ports: dict[str, int] = json.loads(proc.stdout.readline() or "{}")
            if len(ports) != len(hosts):
                raise RuntimeError(f"health backends did not start: {log.read_text()[-2000:]}")
            yield ports, control
        finally:
            with contextlib.suppress(OSError):
                control.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_one(workers: str, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    hosts = [target_host(n, j) for n in range(args.names) for j in range(len(REGIONS))]
    flipped = target_host(0, 0)  # the first name's preferred target for a third of the groups
    root = workdir / f"policy-{workers}"
    root.mkdir()
    policy = root / "policy.yaml"
    dns_port, api = free_udp_tcp_port(), free_port()
    argv = [
        sys.executable, "-m", "controlplane.cli", "--log-level", args.log_level, "serve", str(root),
        "--xds", "127.0.0.1:0", "--api", f"127.0.0.1:{api}", "--dns", f"127.0.0.1:{dns_port}",
        "--dns-workers", workers, "--debounce-ms", "20",
    ]  # fmt: skip
    phases: dict[str, tuple[float, float, int]] = {}  # name -> (start, end, changes made)
    counted: dict[str, float] = {}
    backends_log = workdir / f"health-{workers}.log"
    with health_backends(hosts, backends_log) as (ports, control):
        policy.write_text(policy_text(args.names, args.groups, ports, 30))
        log = workdir / f"ubiq-{workers}.log"
        with running(argv, log=log) as proc:

            def up() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"ubiq serve exited: {log.read_text()[-2000:]}")
                return all_healthy(api, len(hosts))

            wait_until(up, 180, "ubiq serve up, every target healthy")

            async def main() -> list[_Client]:
                loop = asyncio.get_running_loop()
                seconds = args.seconds
                counted["before"] = await asyncio.to_thread(rebuilds, api)  # outside the phases
                load = loop.create_task(drive(dns_port, args, 3 * seconds))
                t0 = time.perf_counter()
                await asyncio.sleep(seconds)
                t1 = time.perf_counter()
                phases["idle"] = (t0, t1, 0)
                flips, status = 0, 200
                while time.perf_counter() - t1 < seconds:
                    status = 503 if status == 200 else 200
                    control.write(f"{flipped} {status}\n")
                    flips += 1
                    await asyncio.sleep(0.4)
                control.write(f"{flipped} 200\n")
                t2 = time.perf_counter()
                phases["health"] = (t1, t2, flips)
                ttl, writes = 30, 0
                while time.perf_counter() - t2 < seconds:
                    ttl = 31 if ttl == 30 else 30  # every name's TTL: a full rebuild
                    text = policy_text(args.names, args.groups, ports, ttl)
                    await asyncio.to_thread(policy.write_text, text)
                    writes += 1
                    await asyncio.sleep(1.5)
                t3 = time.perf_counter()
                phases["policy"] = (t2, t3, writes)
                clients = await load
                counted["after"] = await asyncio.to_thread(rebuilds, api)
                return clients

            clients = asyncio.run(main())
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
    parser.add_argument("--log-level", default="warning", help="ubiq serve's")
    parser.add_argument("--keep", type=Path, help="write policies and logs here (kept)")
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ubiq-rebuild-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for workers in args.workers:
            rows = run_one(workers, args, workdir)
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
    (RESULTS / "dns_rebuild_latency.json").write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
