"""DNS queries per second: `ubiq serve` (the product) vs PowerDNS 4.7 static and LUA ifportup.

Everything runs on loopback in the same run, on the same machine as dnsperf:

* ``ubiq serve`` on a copy of ``examples/three-regions`` (health-check port moved to a free one,
  every target healthy: the bench answers the probes), with ``--dns-workers auto`` and again with
  ``--dns-workers 0`` (UDP in the main process, as before the workers);
* the bare ``DnsServer`` alone in a process (uvloop), serving the table the same policy gives,
  so the cost of the process around it stays visible;
* a floor: one uvloop process answering every datagram with fixed bytes (no DNS work), the most
  one Python process's per-packet path gives on this machine;
* ``pdns_server`` (bind backend, own config dir) serving a static A and a LUA ``ifportup`` A.

Load: ``--subnets`` dnsperf processes at once, each sending an EDNS Client Subnet option of its
own (europe, america, asia and an unlisted /24 that falls to the default group) with
``-c CLIENTS -q OUTSTANDING``; Ubiq's query file mixes steered names (``checkout``, its alias
``shop``) and static ones (``ns1`` glue, the zone SOA). QPS is the sum over the processes. The
servers are measured in turn, round after round (``--repeat``), so the ratios of each round come
from the same minutes of a shared machine.

    .venv/bin/python -m bench.dns_qps [--seconds 8] [--subnets 4] [--clients 8]
        [--outstanding 25] [--repeat 1] [--workers auto] [--baseline-tree DIR]

``--baseline-tree DIR`` (a ``git archive`` of another commit, unpacked) adds a row: ``ubiq
serve`` from that tree, measured right before this tree's in every round. Two more modes:
``--profile FILE`` records one DNS worker under the load with py-spy and prints where its time
goes; ``--hit-path QUERIES --baseline-tree DIR`` times the UDP callback alone on packet-cache
hits, this tree against the other (CPU per query, which a loaded machine disturbs far less).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import ipaddress
import json
import linecache
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tests.support.poll import wait_until
from tests.support.procs import free_port, free_udp_tcp_port, require_binary, running, wait_for_port

RESULTS = Path(__file__).parent / "results"
EXAMPLE = Path(__file__).parents[1] / "examples" / "three-regions"
TARGETS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
SUBNETS = ("203.0.113.0/24", "192.0.2.0/24", "198.51.100.0/24", "100.64.7.0/24")
UBIQ_QUERIES = (
    "checkout.gtm.example A\nshop.gtm.example A\ncheckout.gtm.example A\n"
    "ns1.gtm.example A\ngtm.example SOA\n"
)


def serve_bare(port: int, directory: str, plain_asyncio: bool = False) -> None:
    """Child process: the bare DnsServer (uvloop, or asyncio's own loop) with the table
    ``directory``'s policy gives."""
    import asyncio

    from controlplane.gtm.dns.server import DnsServer, run
    from controlplane.gtm.plan import GtmConfig
    from controlplane.gtm.runtime import GtmRuntime
    from controlplane.policy.loader import load_directory

    async def plan_table() -> object:
        runtime = GtmRuntime(GtmConfig(ns_addresses=("127.0.0.1",)))
        plan = await runtime.start(load_directory(directory))  # undecided health: all serve
        return plan.table

    table = asyncio.run(plan_table())
    server = DnsServer(table, listen=[("127.0.0.1", port)])  # type: ignore[arg-type]
    if plain_asyncio:
        run(server, loop_factory=asyncio.new_event_loop)
    else:
        run(server)


def serve_floor(port: int) -> None:
    """Child process: the floor of a Python UDP server, no DNS work at all. uvloop answers each
    datagram with its first two bytes (the query ID) and fixed bytes after them: what one Python
    process can answer when the answer costs nothing, so the product's distance from PowerDNS
    splits into the per-packet path (this row) and the DNS work (the bare server's row)."""
    import asyncio

    import dns.message
    import dns.rrset
    import uvloop

    query = dns.message.make_query("checkout.gtm.example.", "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("checkout.gtm.example.", 30, "IN", "A", TARGETS[0]))
    tail = response.to_wire()[2:]

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.transport.sendto(data[:2] + tail, addr)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
        await asyncio.Event().wait()

    uvloop.run(serve())


def floor_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "bench.dns_qps", "--serve-floor", str(port)]


def bare_argv(port: int, policy: Path, plain_asyncio: bool = False) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "bench.dns_qps",
        "--serve-bare",
        str(port),
        "--policy",
        str(policy),
    ]
    return [*argv, "--plain-asyncio"] if plain_asyncio else argv


def check_steered(port: int, what: str) -> None:
    """Europe's subnet gets eu-west's address (every target healthy), else RuntimeError."""
    got = dig(port, "checkout.gtm.example", "203.0.113.0/24").split()
    if got != ["127.0.0.12"]:
        raise RuntimeError(f"{what}: europe answered {got}, expected 127.0.0.12")


PDNS_CONF = """launch=bind
bind-config={dir}/named.conf
local-address=127.0.0.1
local-port={port}
socket-dir={dir}
daemon=no
guardian=no
enable-lua-records=yes
disable-syslog=yes
loglevel=4
webserver=no
"""

ZONE = """$ORIGIN pdns.bench.
$TTL 300
@       IN SOA ns1.pdns.bench. hostmaster.pdns.bench. 1 3600 600 604800 30
@       IN NS  ns1
ns1     IN A   127.0.0.1
static  10 IN A   127.0.0.10
lua     10 IN LUA A "ifportup({check_port}, {{'127.0.0.10', '127.0.0.11'}})"
"""


def ecs_option(subnet: str) -> str:
    """dnsperf ``-E`` value: EDNS option 8 (client subnet), hex (RFC 7871 6)."""
    net = ipaddress.ip_network(subnet)
    family = 1 if net.version == 4 else 2
    address = net.network_address.packed[: (net.prefixlen + 7) // 8]
    return f"8:{family:04x}{net.prefixlen:02x}00{address.hex()}"


def dnsperf_one(port: int, queries: Path, subnet: str, args: argparse.Namespace) -> str:
    argv = [
        require_binary("dnsperf"),
        *("-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-E", ecs_option(subnet)),
        *("-l", str(args.seconds), "-c", str(args.clients), "-q", str(args.outstanding)),
    ]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=args.seconds + 60, check=True
    ).stdout


def dnsperf(port: int, queries: Path, args: argparse.Namespace) -> dict[str, float | str]:
    """``--subnets`` dnsperf processes at once, one client subnet each; their sum."""
    subnets = [SUBNETS[i % len(SUBNETS)] for i in range(args.subnets)]
    with ThreadPoolExecutor(len(subnets)) as pool:
        outs = list(pool.map(lambda s: dnsperf_one(port, queries, s, args), subnets))

    def number(out: str, label: str) -> float:
        match = re.search(rf"{label}:\s+([0-9.]+)", out)
        return float(match.group(1)) if match else float("nan")

    qps = [number(o, r"Queries per second") for o in outs]
    latency = [number(o, r"Average Latency \(s\)") * 1000 for o in outs]
    codes = sorted(
        {m.group(1).strip() for o in outs if (m := re.search(r"Response codes:\s+(.*)", o))}
    )
    return {
        "qps": sum(qps),
        "avg_latency_ms": sum(q * lat for q, lat in zip(qps, latency, strict=True)) / sum(qps),
        "lost": sum(number(o, r"Queries lost") for o in outs),
        "rcodes": " | ".join(codes),
        "command": f"{args.subnets} x dnsperf -s 127.0.0.1 -p PORT -d {queries.name} -E 8:<subnet>"
        f" -l {args.seconds} -c {args.clients} -q {args.outstanding}",
    }


def dig(port: int, qname: str, subnet: str | None = None) -> str:
    argv = [require_binary("dig"), "@127.0.0.1", "-p", str(port), qname, "A", "+short", "+time=2"]
    if subnet:
        argv.append(f"+subnet={subnet}")
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False).stdout


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def health_backends() -> tuple[int, list[http.server.ThreadingHTTPServer]]:
    """One HTTP server answering 200 on each target address, all on one port."""
    while True:
        port = free_port(TARGETS[0])
        servers: list[http.server.ThreadingHTTPServer] = []
        try:
            for host in TARGETS:
                servers.append(http.server.ThreadingHTTPServer((host, port), _Healthy))
        except OSError:
            for server in servers:
                server.server_close()
            continue
        for server in servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return port, servers


def ubiq_serve_argv(policy: Path, dns: int, api: int, workers: str) -> list[str]:
    return [
        sys.executable, "-m", "controlplane.cli", "--log-level", "warning", "serve", str(policy),
        "--xds", "127.0.0.1:0", "--api", f"127.0.0.1:{api}", "--dns", f"127.0.0.1:{dns}",
        "--dns-workers", workers,
    ]  # fmt: skip


def prepare_policy(workdir: Path, health_port: int) -> Path:
    """A copy of the example policy whose health checks go to ``health_port``."""
    policy = workdir / "policy"
    shutil.copytree(EXAMPLE, policy)
    clusters = policy / "clusters.yaml"
    clusters.write_text(clusters.read_text().replace("port: 15443", f"port: {health_port}"))
    return policy


def worker_pids(parent: int) -> list[int]:
    """The DNS worker processes of the ``ubiq serve`` whose pid is ``parent``."""
    out = subprocess.run(
        ["pgrep", "-P", str(parent), "-f", "controlplane.gtm.dns.worker"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [int(pid) for pid in out.split()]


def profile(args: argparse.Namespace) -> None:
    """py-spy records the first DNS worker of ``ubiq serve --dns-workers WORKERS`` (from
    ``--baseline-tree`` when given) while the usual load runs for ``--seconds``; raw (collapsed)
    stacks go to ``args.profile``, and the shares of the hot path's parts are printed
    (``profile_shares``)."""
    tree = Path(args.baseline_tree).resolve() if args.baseline_tree else Path(__file__).parents[1]
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or require_binary(
        "py-spy"
    )
    with tempfile.TemporaryDirectory(prefix="ubiq-dnsprof-") as tmp:
        workdir = Path(tmp)
        health_port, backends = health_backends()
        policy = prepare_policy(workdir, health_port)
        port, api = free_udp_tcp_port(), free_port()
        queries = workdir / "ubiq.txt"
        queries.write_text(UBIQ_QUERIES)
        argv = ubiq_serve_argv(policy, port, api, args.workers)
        try:
            env = {"PYTHONPATH": str(tree)}
            with running(argv, log=workdir / "ubiq.log", env=env, cwd=tree) as proc:
                wait_until(partial(all_healthy, api), 60, "ubiq serve healthy")
                wait_for_port("127.0.0.1", port, 30)
                check_steered(port, "ubiq serve")
                wait_until(lambda: worker_pids(proc.pid), 30, "a DNS worker")
                pids = worker_pids(proc.pid)
                record = [
                    py_spy, "record", "-r", "500", "-d", str(args.seconds), "-f", "raw",
                    "-o", args.profile, "--nonblocking", "-p", str(pids[0]),
                ]  # fmt: skip
                spy = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                load = dnsperf(port, queries, args)
                _, err = spy.communicate(timeout=args.seconds + 60)
                if spy.returncode:
                    raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")
        finally:
            for server in backends:
                server.shutdown()
                server.server_close()
    print(f"{load['qps']:.0f} qps, rcodes {load['rcodes']}")
    for part, share in profile_shares(Path(args.profile), tree).items():
        print(f"  {part:40} {share:>6.1%}")


#: (part of the UDP path, what marks its frame); a frame of the UDP callback counts as
#: "sendto" when its source line calls ``sendto``
PROFILE_PARTS = (
    ("sendto (uvloop: syscall, loopback delivery)", ".sendto("),
    ("packet cache store", "put (controlplane/gtm/dns/packet_cache.py"),
    ("packet cache lookup", "controlplane/gtm/dns/packet_cache.py"),
    ("answer()", "answer (controlplane/gtm/dns/answer.py"),
    ("RRL filter", "filter (controlplane/gtm/dns/rrl.py"),
    ("metrics", "controlplane/gtm/dns/metrics.py"),
    ("datagram_received (own lines)", "datagram_received (controlplane/gtm/dns/server.py"),
)
FRAME = re.compile(r"\((?P<file>[^():]+):(?P<line>\d+)\)$")


def _with_source(frame: str, tree: Path) -> str:
    """``frame`` ("function (file:line)"), with the source line appended when it is ours."""
    match = FRAME.search(frame)
    if match is None or not match["file"].startswith("controlplane/"):
        return frame
    return frame + " " + linecache.getline(str(tree / match["file"]), int(match["line"])).strip()


def _part(frames: list[str], tree: Path) -> str:
    """The part of ``PROFILE_PARTS`` of the deepest frame that has one: without pausing the
    process (``--nonblocking``) py-spy can pair a callee with a stale line of its caller."""
    for frame in reversed(frames):
        text = _with_source(frame, tree)
        for name, mark in PROFILE_PARTS:
            if mark in text:
                return name
    return "event loop, idle, other"


def profile_shares(path: Path, tree: Path) -> dict[str, float]:
    """Shares of the samples in a py-spy raw file, by ``PROFILE_PARTS``; the rest is the event
    loop (uvloop's receive and callbacks) and whatever else the worker runs, idle included."""
    counts = dict.fromkeys([name for name, _ in PROFILE_PARTS] + ["event loop, idle, other"], 0)
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        total += int(n)
        counts[_part(stack.split(";"), tree)] += int(n)
    return {name: n / total for name, n in counts.items()} if total else {}


#: Run with ``python -c`` in a source tree (this one or ``--baseline-tree``): seconds per query
#: of the UDP callback alone on packet-cache hits, printed as JSON. Only APIs both trees have.
HIT_PATH_CHILD = """
import asyncio, json, sys, time
import dns.edns, dns.message
from controlplane.gtm.dns.rrl import ResponseRateLimiter, RrlConfig
from controlplane.gtm.dns.server import DnsServer, _UdpProtocol
from controlplane.gtm.plan import GtmConfig
from controlplane.gtm.runtime import GtmRuntime
from controlplane.policy.loader import load_directory

directory, lines, subnets, n, rounds = json.loads(sys.argv[1])

async def plan_table():
    runtime = GtmRuntime(GtmConfig(ns_addresses=("127.0.0.1",)))
    return (await runtime.start(load_directory(directory))).table

class Null:
    def sendto(self, data, addr):
        pass

server = DnsServer(asyncio.run(plan_table()), listen=[])
server.rrl = ResponseRateLimiter(RrlConfig(), time.monotonic)  # ubiq serve's default
protocol = _UdpProtocol(server)
protocol.connection_made(Null())
queries = []
for subnet in subnets:
    address, _, prefix = subnet.partition("/")
    option = dns.edns.ECSOption(address, int(prefix))
    for line in lines:
        name, rtype = line.split()
        queries.append(dns.message.make_query(name, rtype, use_edns=0, options=[option]).to_wire())
addr = ("127.0.0.1", 40000)
for q in queries:
    protocol.datagram_received(q, addr)
best = float("inf")
for _ in range(rounds):
    start = time.perf_counter()
    for i in range(n):
        protocol.datagram_received(queries[i % len(queries)], addr)
    best = min(best, (time.perf_counter() - start) / n)
print(json.dumps(best))
"""


def hit_path(tree: Path, policy: Path, queries: int, rounds: int) -> float:
    """Seconds per query of ``tree``'s UDP callback on cache hits (``HIT_PATH_CHILD``)."""
    lines = UBIQ_QUERIES.splitlines()
    argv = [
        sys.executable,
        "-c",
        HIT_PATH_CHILD,
        json.dumps([str(policy), lines, SUBNETS, queries, rounds]),
    ]
    out = subprocess.run(
        argv,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1]))


def compare_hit_path(args: argparse.Namespace) -> None:
    """The UDP callback alone (no sockets, no event loop), this tree against
    ``--baseline-tree``, alternating, ``--repeat`` times: CPU work per query, which the
    machine's load disturbs far less than a qps figure."""
    here = Path(__file__).parents[1]
    baseline = Path(args.baseline_tree).resolve()
    with tempfile.TemporaryDirectory(prefix="ubiq-hitpath-") as tmp:
        policy = prepare_policy(Path(tmp), free_port(TARGETS[0]))
        rows = []
        for _ in range(args.repeat):
            before = hit_path(baseline, policy, args.hit_path, 5)
            after = hit_path(here, policy, args.hit_path, 5)
            rows.append({"baseline_us": before * 1e6, "this_us": after * 1e6})
            print(
                f"baseline {before * 1e6:.2f} us/query, this tree {after * 1e6:.2f} us/query,"
                f" {after / before:.2f}x",
                flush=True,
            )
    RESULTS.mkdir(exist_ok=True)
    out = {"hit_path": rows, "args": vars(args), "time": time.time()}
    (RESULTS / "dns_hit_path.json").write_text(json.dumps(out, indent=2))


def all_healthy(api: int) -> bool:
    rows = httpx.get(f"http://127.0.0.1:{api}/v1/gtm/health", timeout=2).json()
    return bool(rows) and all(r["healthy"] is True for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--subnets", type=int, default=4, help="dnsperf processes, one subnet each")
    parser.add_argument("--clients", type=int, default=8, help="dnsperf -c, per process")
    parser.add_argument("--outstanding", type=int, default=25, help="dnsperf -q, per process")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over every server")
    parser.add_argument("--workers", default="auto", help="ubiq serve --dns-workers")
    parser.add_argument(
        "--baseline-tree",
        metavar="DIR",
        help="also run `ubiq serve --dns-workers WORKERS` from this source tree (e.g. `git archive`"
        " of the base commit, unpacked), as a row of every round",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="instead of the comparison: py-spy (raw) the first DNS worker of `ubiq serve"
        " --dns-workers WORKERS` (from --baseline-tree if given) under the load for --seconds,"
        " print the hot path's shares",
    )
    parser.add_argument(
        "--hit-path",
        type=int,
        metavar="QUERIES",
        help="instead of the comparison: time the UDP callback alone on packet-cache hits,"
        " QUERIES calls per measure, this tree against --baseline-tree, --repeat times",
    )
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    parser.add_argument("--plain-asyncio", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare, args.policy, args.plain_asyncio)
        return 0
    if args.serve_floor:
        serve_floor(args.serve_floor)
        return 0
    if args.profile:
        profile(args)
        return 0
    if args.hit_path:
        if not args.baseline_tree:
            parser.error("--hit-path needs --baseline-tree")
        compare_hit_path(args)
        return 0
    pdns_binary = require_binary("pdns_server")
    rounds: list[dict[str, dict[str, float | str]]] = []
    with tempfile.TemporaryDirectory(prefix="ubiq-dnsperf-") as tmp:
        workdir = Path(tmp)
        health_port, backends = health_backends()
        policy = prepare_policy(workdir, health_port)
        ports = {k: free_udp_tcp_port() for k in ("workers", "inproc", "bare", "floor", "pdns")}
        apis = {k: free_port() for k in ("workers", "inproc")}
        baseline = Path(args.baseline_tree).resolve() if args.baseline_tree else None
        if baseline is not None:
            ports["baseline"], apis["baseline"] = free_udp_tcp_port(), free_port()
        check_port = free_port("127.0.0.10")
        (workdir / "pdns.conf").write_text(PDNS_CONF.format(dir=workdir, port=ports["pdns"]))
        (workdir / "named.conf").write_text(
            f'zone "pdns.bench" {{ type master; file "{workdir}/pdns.bench.zone"; }};\n'
        )
        (workdir / "pdns.bench.zone").write_text(ZONE.format(check_port=check_port))
        up = [socket.create_server((host, check_port)) for host in ("127.0.0.10", "127.0.0.11")]
        ubiq_file = workdir / "ubiq.txt"
        ubiq_file.write_text(UBIQ_QUERIES)
        static_file, lua_file = workdir / "static.txt", workdir / "lua.txt"
        static_file.write_text("static.pdns.bench A\n")
        lua_file.write_text("lua.pdns.bench A\n")
        pdns_argv = [
            pdns_binary, f"--config-dir={workdir}", "--daemon=no", "--guardian=no",
            f"--socket-dir={workdir}",
        ]  # fmt: skip
        workers_argv = ubiq_serve_argv(policy, ports["workers"], apis["workers"], args.workers)
        inproc_argv = ubiq_serve_argv(policy, ports["inproc"], apis["inproc"], "0")
        try:
            with contextlib.ExitStack() as stack:
                if baseline is not None:  # its own sources first on the path, the same venv
                    stack.enter_context(
                        running(
                            ubiq_serve_argv(
                                policy, ports["baseline"], apis["baseline"], args.workers
                            ),
                            log=workdir / "ubiq-baseline.log",
                            env={"PYTHONPATH": str(baseline)},
                            cwd=baseline,
                        )
                    )
                stack.enter_context(
                    running(workers_argv, log=workdir / "ubiq-workers.log"),
                )
                stack.enter_context(running(inproc_argv, log=workdir / "ubiq-inproc.log"))
                stack.enter_context(
                    running(bare_argv(ports["bare"], policy), log=workdir / "bare.log")
                )
                stack.enter_context(running(floor_argv(ports["floor"]), log=workdir / "floor.log"))
                stack.enter_context(running(pdns_argv, log=workdir / "pdns.log"))
                for api in apis.values():
                    wait_until(partial(all_healthy, api), 60, f"ubiq serve (API {api}) healthy")
                for key in ports.keys() - {"floor"}:  # the floor has no TCP listener
                    wait_for_port("127.0.0.1", ports[key], 30)
                wait_until(lambda: dig(ports["floor"], "checkout.gtm.example", None), 30, "floor")
                time.sleep(1.5)  # ifportup's first checks
                for key in ports.keys() - {"floor", "pdns"}:
                    check_steered(ports[key], key)
                for qname in ("static.pdns.bench", "lua.pdns.bench"):
                    if not dig(ports["pdns"], qname).strip():
                        raise RuntimeError(f"PowerDNS: no answer for {qname}")
                for _ in range(args.repeat):
                    rows = {}
                    if baseline is not None:
                        rows[f"ubiq serve --dns-workers {args.workers}, baseline tree"] = dnsperf(
                            ports["baseline"], ubiq_file, args
                        )
                    rows |= {
                        f"ubiq serve --dns-workers {args.workers}": dnsperf(
                            ports["workers"], ubiq_file, args
                        ),
                        "ubiq serve --dns-workers 0": dnsperf(ports["inproc"], ubiq_file, args),
                        "bare DnsServer (one process)": dnsperf(ports["bare"], ubiq_file, args),
                        "floor: Python UDP echo (no DNS work)": dnsperf(
                            ports["floor"], ubiq_file, args
                        ),
                        "powerdns static": dnsperf(ports["pdns"], static_file, args),
                        "powerdns lua ifportup": dnsperf(ports["pdns"], lua_file, args),
                    }
                    rounds.append(rows)
                    report(rows)
        finally:
            for sock in up:
                sock.close()
            for server in backends:
                server.shutdown()
                server.server_close()
    summary = summarize(rounds)
    RESULTS.mkdir(exist_ok=True)
    out = {"rounds": rounds, "summary": summary, "args": vars(args), "time": time.time()}
    (RESULTS / "dns_qps.json").write_text(json.dumps(out, indent=2))
    return 0


def ratios(rows: dict[str, dict[str, float | str]]) -> dict[str, float]:
    static = float(rows["powerdns static"]["qps"])
    lua = float(rows["powerdns lua ifportup"]["qps"])
    out = {}
    for name, row in rows.items():
        if name.startswith(("ubiq", "bare", "floor")):
            out[f"{name} / static"] = float(row["qps"]) / static
            out[f"{name} / lua"] = float(row["qps"]) / lua
    return out


def report(rows: dict[str, dict[str, float | str]]) -> None:
    print(f"{'server':34} {'qps':>9} {'avg ms':>7} {'lost':>6}  rcodes", flush=True)
    for name, row in rows.items():
        print(
            f"{name:34} {float(row['qps']):>9.0f} {float(row['avg_latency_ms']):>7.2f} "
            f"{float(row['lost']):>6.0f}  {row['rcodes']}"
        )
    for name, ratio in ratios(rows).items():
        print(f"  {name:48} {ratio:>7.2f}x")
    print(flush=True)


def summarize(rounds: list[dict[str, dict[str, float | str]]]) -> dict[str, list[float]]:
    """Per ratio: [min, max] over the rounds."""
    every = [ratios(r) for r in rounds]
    summary = {k: [min(r[k] for r in every), max(r[k] for r in every)] for k in every[0]}
    if len(rounds) > 1:
        print("ratios over the rounds (min - max):")
        for name, (low, high) in summary.items():
            print(f"  {name:48} {low:>7.2f} - {high:.2f}x")
    return summary


if __name__ == "__main__":
    sys.exit(main())
