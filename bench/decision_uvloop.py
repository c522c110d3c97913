"""Decision: the GTM's DNS server runs on uvloop (docs/decisions.md).

The same bare Ubiq DNS server (examples/three-regions' table, as in bench.dns_qps) in two child
processes, one on uvloop and one on asyncio's own loop, each loaded by dnsperf in turn over UDP
on loopback (bench.dns_qps's load: several client subnets, steered and static names).

    .venv/bin/python -m bench.decision_uvloop [--seconds 10] [--subnets 2] [--clients 8]
        [--outstanding 50]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench._common import save
from bench.dns_qps import EXAMPLE, UBIQ_QUERIES, bare_argv, check_steered, dnsperf
from tests.support.procs import free_udp_tcp_port, running, wait_for_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--subnets", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--outstanding", type=int, default=50)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ubiq-uvloop-") as tmp:
        workdir = Path(tmp)
        queries = workdir / "ubiq.txt"
        queries.write_text(UBIQ_QUERIES)
        for case, plain in (("uvloop (baseline)", False), ("asyncio's own loop", True)):
            port = free_udp_tcp_port()
            with running(bare_argv(port, EXAMPLE, plain), log=workdir / f"{port}.log"):
                wait_for_port("127.0.0.1", port)
                check_steered(port, case)
                rows.append({"case": case, **dnsperf(port, queries, args)})
    base = float(rows[0]["qps"])
    print(f"{'loop':<22} {'qps':>10} {'vs uvloop':>10} {'avg ms':>8} {'lost':>6}")
    for row in rows:
        row["ratio"] = float(row["qps"]) / base
        print(
            f"{row['case']:<22} {float(row['qps']):>10.0f} {row['ratio']:>9.2f}x "
            f"{float(row['avg_latency_ms']):>8.3f} {float(row['lost']):>6.0f}"
        )
    save("decision_uvloop", args, rows=rows)


if __name__ == "__main__":
    main()
