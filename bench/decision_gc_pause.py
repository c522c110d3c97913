"""Decision: the cyclic GC is paused while a policy set loads (docs/decisions.md).

Loads N services (and their RoutePolicies) from YAML text with ``load_texts`` as Ubiq does (GC
paused for the load), and again with the pause taken out (the GC left running), each in a fresh
interpreter. What is timed is a reload: the second load, while the first model is still alive,
as in a running ``ubiq serve`` (the GC's cost grows with the objects already alive).

    .venv/bin/python -m bench.decision_gc_pause [--services 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

from bench._common import save


def child(services: int, pause: bool) -> float:
    from bench.xds_compile import texts
    from controlplane.policy import loader

    inputs = texts(services)
    if not pause:

        @contextlib.contextmanager
        def gc_running() -> Iterator[None]:
            yield

        loader._gc_paused = gc_running
    serving = loader.load_texts(inputs)
    started = time.perf_counter()
    model = loader.load_texts(inputs)
    seconds = time.perf_counter() - started
    assert len(model.services) == len(serving.services) == services
    return seconds


def best(services: int, pause: bool, repeat: int) -> float:
    argv = [sys.executable, "-m", "bench.decision_gc_pause", "--child", "--services", str(services)]
    argv += [] if pause else ["--gc-running"]
    runs = [subprocess.run(argv, capture_output=True, text=True, check=True) for _ in range(repeat)]
    return min(float(run.stdout) for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--gc-running", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(child(args.services, pause=not args.gc_running))
        return
    paused = best(args.services, True, args.repeat)
    running = best(args.services, False, args.repeat)
    rows = [
        {"case": "load_texts, GC paused (baseline)", "seconds": paused, "ratio": 1.0},
        {"case": "load_texts, GC running", "seconds": running, "ratio": running / paused},
    ]
    print(f"{args.services} services + {args.services} RoutePolicies, best of {args.repeat}")
    print(f"{'case':<36} {'seconds':>9} {'ratio':>7}")
    for row in rows:
        print(f"{row['case']:<36} {row['seconds']:>9.2f} {row['ratio']:>6.2f}x")
    save("decision_gc_pause", args, rows=rows)


if __name__ == "__main__":
    main()
