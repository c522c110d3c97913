"""`make bench`: run every benchmark in turn; each prints a table and writes JSON to bench/results/."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = (
    "xds_compile",
    "xds_fanout",
    "xds_convergence",
    "dns_qps",
    "gtm_table",
    "steering",
    "gtm_failover",
    "placement_decide",
)


def main(argv: list[str]) -> int:
    chosen = argv or [b for b in BENCHMARKS if (Path(__file__).parent / f"{b}.py").exists()]
    failed = []
    for name in chosen:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}"])
        print(f"== {name}: exit {code} in {time.monotonic() - started:.1f}s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
