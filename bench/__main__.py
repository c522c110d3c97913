"""`make bench`: run every benchmark in turn; each prints a table and writes JSON to bench/results/.

``python -m bench NAME...`` runs the named ones; ``python -m bench decisions`` runs the benchmarks
behind docs/decisions.md (opt-in: they re-measure choices already made, a few minutes in all).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = (
    "xds_compile",
    "cold_start",
    "xds_fanout",
    "xds_convergence",
    "dns_qps",
    "dns_rebuild_latency",
    "gtm_table",
    "steering",
    "gtm_failover",
    "etcd_client",
    "placement_decide",
    "feedback_loop",
)
DECISIONS = (
    "decision_protos",
    "decision_dns_wire",
    "decision_uvloop",
    "decision_envoy_wheel",
    "decision_gc_pause",
)


def main(argv: list[str]) -> int:
    if argv == ["decisions"]:
        chosen = list(DECISIONS)
    else:
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
