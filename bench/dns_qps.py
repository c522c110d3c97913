"""DNS queries per second: Ubiq's GTM (steered answer, uvloop) vs PowerDNS 4.7 (static and LUA ifportup).

Everything runs on loopback in the same run: the Ubiq server in a subprocess, ``pdns_server``
with the bind backend and its own config dir, and ``dnsperf`` against each in turn.

    .venv/bin/python -m bench.dns_qps [--seconds 10] [--clients 4] [--outstanding 200]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.procs import free_port, free_udp_tcp_port, require_binary, running, wait_for_port

RESULTS = Path(__file__).parent / "results"
UBIQ_NAME = "app.bench.example"


def serve(port: int, plain_asyncio: bool = False) -> None:
    """Child process: the Ubiq DNS server with a steered name, on uvloop (or asyncio's loop)."""
    import asyncio

    from controlplane.gtm.dns.server import DnsServer, run
    from controlplane.gtm.dns.table import AnswerTable
    from controlplane.gtm.dns.zone import Zone
    from controlplane.gtm.groups import ClientGroups
    from controlplane.gtm.types import ClientGroup, Decision, SteeringPolicy, Target

    net = ipaddress.ip_network
    groups = ClientGroups(
        [ClientGroup("eu", (net("10.1.0.0/16"),)), ClientGroup("us", (net("10.2.0.0/16"),))]
    )
    policy = SteeringPolicy(
        name=UBIQ_NAME,
        zone="bench.example",
        strategy="geo",
        targets=(Target("eu-1", "eu", "127.0.0.10", 80), Target("us-1", "us", "127.0.0.11", 80)),
        ttl=10,
    )
    decisions = [
        Decision(UBIQ_NAME, "eu", ("127.0.0.10",)),
        Decision(UBIQ_NAME, "us", ("127.0.0.11",)),
        Decision(UBIQ_NAME, "default", ("127.0.0.10",)),
    ]
    zone = Zone("bench.example", ("ns1.bench.example",), glue={"ns1.bench.example": ("127.0.0.1",)})
    table = AnswerTable.build([zone], decisions, groups, [policy], generation=1)
    server = DnsServer(table, listen=[("127.0.0.1", port)])
    if plain_asyncio:
        run(server, loop_factory=asyncio.new_event_loop)
    else:
        run(server)


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


def dnsperf(
    port: int, qname: str, workdir: Path, args: argparse.Namespace
) -> dict[str, float | str]:
    queries = workdir / f"{qname}.txt"
    queries.write_text(f"{qname} A\n")
    argv = [
        require_binary("dnsperf"),
        *("-s", "127.0.0.1", "-p", str(port), "-d", str(queries)),
        *("-l", str(args.seconds), "-c", str(args.clients), "-q", str(args.outstanding)),
    ]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=args.seconds + 60, check=True
    ).stdout

    def number(label: str) -> float:
        match = re.search(rf"{label}:\s+([0-9.]+)", out)
        return float(match.group(1)) if match else float("nan")

    codes = re.search(r"Response codes:\s+(.*)", out)
    return {
        "qps": number(r"Queries per second"),
        "avg_latency_ms": number(r"Average Latency \(s\)") * 1000,
        "stddev_latency_ms": number(r"Latency StdDev \(s\)") * 1000,
        "lost": number(r"Queries lost"),
        "rcodes": codes.group(1).strip() if codes else "",
        "command": " ".join(argv),
    }


def check_answer(port: int, qname: str) -> None:
    out = subprocess.run(
        [require_binary("dig"), "@127.0.0.1", "-p", str(port), qname, "A", "+short", "+time=2"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    ).stdout
    if not out.strip():
        raise RuntimeError(f"no answer for {qname} on port {port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--outstanding", type=int, default=200)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plain-asyncio", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.plain_asyncio)
        return 0
    pdns_binary = require_binary("pdns_server")
    results: dict[str, dict[str, float | str]] = {}
    with tempfile.TemporaryDirectory(prefix="ubiq-dnsperf-") as tmp:
        workdir = Path(tmp)
        ubiq_port, pdns_port = free_udp_tcp_port(), free_udp_tcp_port()
        check_port = free_port("127.0.0.10")
        (workdir / "pdns.conf").write_text(PDNS_CONF.format(dir=workdir, port=pdns_port))
        (workdir / "named.conf").write_text(
            f'zone "pdns.bench" {{ type master; file "{workdir}/pdns.bench.zone"; }};\n'
        )
        (workdir / "pdns.bench.zone").write_text(ZONE.format(check_port=check_port))
        up = [socket.create_server((host, check_port)) for host in ("127.0.0.10", "127.0.0.11")]
        ubiq_argv = [sys.executable, "-m", "bench.dns_qps", "--serve", str(ubiq_port)]
        pdns_argv = [
            pdns_binary,
            f"--config-dir={workdir}",
            "--daemon=no",
            "--guardian=no",
            f"--socket-dir={workdir}",
        ]
        try:
            with (
                running(ubiq_argv, log=workdir / "ubiq.log"),
                running(pdns_argv, log=workdir / "pdns.log"),
            ):
                wait_for_port("127.0.0.1", ubiq_port)
                wait_for_port("127.0.0.1", pdns_port)
                time.sleep(1.5)  # ifportup's first checks
                for port, qname in (
                    (ubiq_port, UBIQ_NAME),
                    (pdns_port, "static.pdns.bench"),
                    (pdns_port, "lua.pdns.bench"),
                ):
                    check_answer(port, qname)
                results["ubiq steered (uvloop)"] = dnsperf(ubiq_port, UBIQ_NAME, workdir, args)
                results["powerdns static"] = dnsperf(pdns_port, "static.pdns.bench", workdir, args)
                results["powerdns lua ifportup"] = dnsperf(
                    pdns_port, "lua.pdns.bench", workdir, args
                )
        finally:
            for sock in up:
                sock.close()
    ubiq = float(results["ubiq steered (uvloop)"]["qps"])
    ratios = {
        "ubiq / powerdns lua": ubiq / float(results["powerdns lua ifportup"]["qps"]),
        "ubiq / powerdns static": ubiq / float(results["powerdns static"]["qps"]),
    }
    print(f"{'server':28} {'qps':>10} {'avg ms':>8} {'sd ms':>8} {'lost':>6}  rcodes")
    for name, row in results.items():
        print(
            f"{name:28} {float(row['qps']):>10.0f} {float(row['avg_latency_ms']):>8.3f} "
            f"{float(row['stddev_latency_ms']):>8.3f} {float(row['lost']):>6.0f}  {row['rcodes']}"
        )
    for name, ratio in ratios.items():
        print(f"{name:28} {ratio:>10.2f}x")
    RESULTS.mkdir(exist_ok=True)
    out = {"results": results, "ratios": ratios, "args": vars(args), "time": time.time()}
    (RESULTS / "dns_qps.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
