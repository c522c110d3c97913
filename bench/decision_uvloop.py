"""Decision: the GTM's DNS server runs on uvloop (docs/decisions.md).

The same Ubiq DNS server (a steered name, precomputed answers) in two child processes, one on
uvloop and one on asyncio's own loop, each loaded by dnsperf in turn over UDP on loopback.

    .venv/bin/python -m bench.decision_uvloop [--seconds 10] [--clients 4] [--outstanding 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench._common import save
from bench.dns_qps import UBIQ_NAME, check_answer, dnsperf
from tests.support.procs import free_udp_tcp_port, running, wait_for_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--outstanding", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ubiq-uvloop-") as tmp:
        workdir = Path(tmp)
        for case, extra in (("uvloop (baseline)", []), ("asyncio's own loop", ["--plain-asyncio"])):
            port = free_udp_tcp_port()
            argv = [sys.executable, "-m", "bench.dns_qps", "--serve", str(port), *extra]
            with running(argv, log=workdir / f"{port}.log"):
                wait_for_port("127.0.0.1", port)
                check_answer(port, UBIQ_NAME)
                rows.append({"case": case, **dnsperf(port, UBIQ_NAME, workdir, args)})
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
