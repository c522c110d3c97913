"""DNS answer latency through `ubiq serve` while the answer table changes, vs idle (same run).

    .venv/bin/python -m bench.dns_rebuild_latency [--names 100] [--groups 200] [--rate 1500]
        [--seconds 4] [--rounds 3] [--workers auto 0] [--baseline-src DIR]

For each ``--workers`` value, one ``ubiq serve --dns-workers W`` on a generated policy:
``--names`` geo GlobalServices, each over a Service of its own with three targets of its own
(one per region, each an address of its own on loopback), all health-checked over HTTP by the
GTM (the first name every 200 ms with thresholds 1, the others every 5 s); ``--groups`` client
groups of one /24 each. The health endpoints are served by a process of their own
(``bench._health_backends``). An open-loop asyncio UDP client sends ``--rate`` queries per
second over 4 sockets, each with an EDNS Client Subnet from a different group, names drawn
round-robin; every query is timed from send to answer, and one unanswered after 2 s is lost.
``--rounds`` times, three phases of ``--seconds`` each:

* ``idle``: nothing changes (the baseline);
* ``health``: the first name's preferred target fails and recovers every 0.4 s: each change
  touches that name only (its own Service's placement, its own answers): an incremental rebuild
  and a delta to the workers;
* ``policy``: the policy file is rewritten every 1.5 s with every name's TTL changed: a model
  reload and a full rebuild of every name, the whole table to the workers.

A second after each health phase and 4 s after each policy phase are not measured (the last
change lands). Phases alternate so that the machine's other load falls on all three alike.
Reported per phase: the changes made, answered, lost, p50/p99/max latency, and p99 over the
idle phase's p99 (the target: within 2x); the table rebuilds (``ubiq_gtm_rebuilds_total``) are
counted over the whole run, scraped before the load starts and after it ends. With
``--baseline-src DIR`` each worker count is run a second time from the source tree ``DIR``
(an older commit), right after, on the same policy and load.
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
PHASES = ("idle", "health", "policy")
HEALTH_SETTLE = 1.0  # seconds after a health phase, not measured (its last change lands)
POLICY_SETTLE = 4.0  # after a policy phase (a full rebuild under load takes seconds)
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


def stats(clients: list[_Client], spans: list[tuple[float, float]]) -> dict[str, float]:
    def within(sent: float) -> bool:
        return any(begin <= sent < end for begin, end in spans)

    lat = sorted(lat for c in clients for sent, lat in c.timings if within(sent))
    lost = sum(1 for c in clients for sent in c.sent.values() if within(sent))
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


def run_one(
    workers: str, args: argparse.Namespace, workdir: Path, src: Path | None = None
) -> dict[str, object]:
    """One ``ubiq serve --dns-workers workers`` (from ``src``, a source tree, when given)."""
    hosts = [target_host(n, j) for n in range(args.names) for j in range(len(REGIONS))]
    flipped = target_host(0, 0)  # the first name's preferred target for a third of the groups
    label = f"{workers}-{'baseline' if src else 'this'}"
    root = workdir / f"policy-{label}"
    root.mkdir()
    policy = root / "policy.yaml"
    dns_port, api = free_udp_tcp_port(), free_port()
    argv = [
        sys.executable, "-m", "controlplane.cli", "--log-level", args.log_level, "serve", str(root),
        "--xds", "127.0.0.1:0", "--api", f"127.0.0.1:{api}", "--dns", f"127.0.0.1:{dns_port}",
        "--dns-workers", workers, "--debounce-ms", "20",
    ]  # fmt: skip
    windows: dict[str, list[tuple[float, float]]] = {p: [] for p in PHASES}  # measured spans
    changes = dict.fromkeys(PHASES, 0)
    counted: dict[str, float] = {}
    backends_log = workdir / f"health-{label}.log"
    with health_backends(hosts, backends_log) as (ports, control):
        policy.write_text(policy_text(args.names, args.groups, ports, 30))
        log = workdir / f"ubiq-{label}.log"
        env = {"PYTHONPATH": str(src.resolve())} if src else None
        with running(argv, log=log, env=env, cwd=src) as proc:

            def up() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"ubiq serve exited: {log.read_text()[-2000:]}")
                return all_healthy(api, len(hosts))

            wait_until(up, 180, "ubiq serve up, every target healthy")

            async def main() -> list[_Client]:
                loop = asyncio.get_running_loop()
                seconds = args.seconds
                counted["before"] = await asyncio.to_thread(rebuilds, api)  # outside the phases
                per_round = 3 * seconds + HEALTH_SETTLE + POLICY_SETTLE
                load = loop.create_task(drive(dns_port, args, args.rounds * per_round))
                ttl = 30
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    await asyncio.sleep(seconds)
                    windows["idle"].append((start, time.perf_counter()))
                    start, status = time.perf_counter(), 200
                    while time.perf_counter() - start < seconds:
                        status = 503 if status == 200 else 200
                        control.write(f"{flipped} {status}\n")
                        changes["health"] += 1
                        await asyncio.sleep(0.4)
                    control.write(f"{flipped} 200\n")
                    windows["health"].append((start, time.perf_counter()))
                    await asyncio.sleep(HEALTH_SETTLE)  # the last flip back: not measured
                    start = time.perf_counter()
                    while time.perf_counter() - start < seconds:
                        ttl = 31 if ttl == 30 else 30  # every name's TTL: a full rebuild
                        text = policy_text(args.names, args.groups, ports, ttl)
                        await asyncio.to_thread(policy.write_text, text)
                        changes["policy"] += 1
                        await asyncio.sleep(1.5)
                    windows["policy"].append((start, time.perf_counter()))
                    await asyncio.sleep(POLICY_SETTLE)  # the last rebuild ends: not measured
                clients = await load
                counted["after"] = await asyncio.to_thread(rebuilds, api)
                return clients

            clients = asyncio.run(main())
    out: dict[str, object] = {}
    idle_p99 = 0.0
    for name, spans in windows.items():
        row: dict[str, float] = {**stats(clients, spans), "changes": changes[name]}
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
    parser.add_argument("--seconds", type=float, default=4.0, help="per phase and round")
    parser.add_argument("--rounds", type=int, default=3, help="idle, health, policy: repeated")
    parser.add_argument("--workers", nargs="+", default=["auto", "0"])
    parser.add_argument("--log-level", default="warning", help="ubiq serve's")
    parser.add_argument("--keep", type=Path, help="write policies and logs here (kept)")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run ubiq serve from this source tree (e.g. `git worktree add` of an older"
        " commit), right after each run of this one",
    )
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ubiq-rebuild-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        sources = [None] if args.baseline_src is None else [None, args.baseline_src]
        for workers, src in [(w, s) for w in args.workers for s in sources]:
            rows = run_one(workers, args, workdir, src)
            title = f"ubiq serve --dns-workers {workers}" + (f" (from {src})" if src else "")
            results[title] = rows
            print(title)
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
