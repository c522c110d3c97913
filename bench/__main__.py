"""`make bench`: run every benchmark in turn; each prints a table and writes JSON to bench/results/."""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = ("xds_compile", "xds_fanout", "dns_qps", "steering")


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHMARKS)
    failed = []
    for name in chosen:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"== {name}: not present, skipped", flush=True)
                continue
            raise
        print(f"== {name}", flush=True)
        started = time.monotonic()
        code = module.main([])
        print(f"== {name}: exit {code} in {time.monotonic() - started:.1f}s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
