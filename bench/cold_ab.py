"""Cold start A/B: this checkout against an earlier tree, alternating, CPU beside wall.

    git archive REV | tar -x -C /tmp/base
    .venv/bin/python -m bench.cold_ab --before /tmp/base [--rounds 3 --services 10000]

On a shared machine the wall clock of a cold start mostly measures the other sessions (the
third round saw 2x between rounds); the CPU a process used is steadier. Per round and tree, in
alternating order:

- ``ubiq serve`` exec'd on the cold-start bench's directory: wall seconds until a client in the
  first group built has every cluster (the first snapshot served), and the server's CPU seconds
  (user + system, every thread, ``/proc/PID/stat``) read at that moment;
- in a fresh interpreter of that tree: ``load_directory`` (CPU, GC paused as the loader does),
  then ``build_groups`` (compile + snapshot for every group) CPU on the frozen model.

Ratios are now / before within a round; min-max over rounds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.cold_start import FIRST_GROUP, serve_until_served, write_policy

_IN_PROCESS = """
import gc, json, sys, time
from pathlib import Path
from controlplane.policy import loader
from controlplane.xds.compiler import CompileOptions
from controlplane.xds.runtime import build_groups
start = time.process_time()
model = loader.load_directory(Path(sys.argv[1]), workers=0)
load = time.process_time() - start
gc.collect()
gc.freeze()
start = time.process_time()
build_groups(model, CompileOptions())
print(json.dumps({"load": load, "build_groups": time.process_time() - start}))
"""


def serve_first(root: Path, services: int, tree: Path | None) -> dict[str, float]:
    """Wall and server CPU seconds from exec of ``ubiq serve`` (in ``tree``) until the first
    group built (``FIRST_GROUP``) has every cluster."""
    cpu: dict[str, float] = {}
    wall = serve_until_served(root, services, tree=tree, groups=(FIRST_GROUP,), cpu=cpu)
    return {"wall": wall[FIRST_GROUP], "cpu": cpu[FIRST_GROUP]}


def in_process(root: Path, tree: Path | None) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _IN_PROCESS, str(root)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tree,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, required=True, help="an earlier source tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--services", type=int, default=10_000)
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    rows: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="ubiq-cold-ab-") as tmp:
        root = Path(tmp)
        write_policy(root, args.services)
        for number in range(args.rounds):
            trees = [("now", here), ("before", args.before)]
            if number % 2:
                trees.reverse()
            got: dict[str, dict[str, float]] = {}
            for label, tree in trees:
                figures = {
                    f"serve {k}": v for k, v in serve_first(root, args.services, tree).items()
                }
                figures.update(in_process(root, tree))
                got[label] = figures
            with open("/proc/loadavg") as f:
                load = f.read().split()[0]
            print(f"round {number + 1} (load {load}, first: {trees[0][0]}): {json.dumps(got)}")
            for key, now in got["now"].items():
                rows.setdefault(key, []).append((now, now / got["before"][key]))
            for key, before in got["before"].items():
                rows.setdefault(f"{key}, before", []).append((before, 1.0))
    print(f"{'case (' + str(args.services) + ' services)':<44} {'seconds':>14} {'now/before':>12}")
    for key, values in rows.items():
        s = [v for v, _ in values]
        r = [x for _, x in values]
        ratio = f"{min(r):.2f}-{max(r):.2f}" if not key.endswith("before") else ""
        print(f"{key:<44} {min(s):>6.2f}-{max(s):<7.2f} {ratio:>12}")


if __name__ == "__main__":
    main()
