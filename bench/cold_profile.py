"""Where a cold ``ubiq serve`` goes: a py-spy profile split by step.

    .venv/bin/python -m bench.cold_profile [--services 10000] [--out bench/results/cold_profile.txt]

Writes bench/cold_start.py's policy directory (N services, files of 10), runs
``py-spy record -r 200 -f raw -- python -m controlplane.cli serve DIR --dns off --api off``
until an ADS client in ap-south (the first node group built) has the CDS response with every
cluster, stops the server, and prints the sampled seconds per step: each sample goes to the
innermost frame that matches a step's rule (``STEPS``). py-spy (dev extra) samples every thread
of the server process, not the parse workers. Samples are CPU time under the profiler on this
machine, so read the shares, not the seconds.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.cold_start import FIRST_GROUP, clusters_served, write_policy
from controlplane.ports import free_port

RATE = 200  # samples per second
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GC: gcpolicy (freezes at the load's end and the swaps, full collections)", ("gcpolicy.py",)),
    ("validation (pydantic)", ("validate_document", "model_validate")),
    ("document hashes", ("document_hash",)),
    (
        "YAML parse (libyaml compose + convert)",
        ("compose_all", "parse_documents", "_Converter", "_Loader."),
    ),
    (
        "parse workers: feeding, results (unpickle)",
        ("_Worker.", "_wait (controlplane/policy/parallel_parse"),
    ),
    ("file read + digest", ("read_file", "read_policy_file", "_digest", "policy_files")),
    ("cross-checks + warnings", ("cross_check", "policy_warnings")),
    ("Model.build", ("Model.build",)),
    ("placement + TrafficPolicy lookups", ("placement/", "RoundShare.basis", "ModelIndex")),
    (
        "EDS: ClusterLoadAssignments",
        (
            "assemble_load_assignment",
            "EndpointGroups",
            "eds_wire.py",
            "plan_localities",
            "RoundShare._plan",
            "lb_endpoint",
            "build_load_assignment",
        ),
    ),
    ("CDS: Clusters", ("build_cluster",)),
    (
        "RDS: virtual hosts + RouteConfiguration",
        ("build_virtual_host", "virtual_host", "route_configuration", "build_routes"),
    ),
    ("LDS: listeners", ("build_node_listeners", "listeners.py")),
    (
        "snapshot: serialize, hash, check",
        ("Snapshot.build", "check_consistent", "Entry.", "EntryMemo"),
    ),
    (
        "compile: the rest (assembly, memo)",
        ("compile_node", "build_service_resources", "NodeCompilation"),
    ),
    ("xDS push (streams, gRPC)", ("xds/server.py", "xds/stream.py", "grpc")),
    ("imports", ("_find_and_load", "_get_module_details", "_handle_fromlist")),
    (
        "load: the rest (GC pass after the load's pause, bookkeeping)",
        ("load_texts", "load_directory", "FileCache"),
    ),
)
OTHER = "other (event loop, threads, interpreter)"


def split(raw: Path) -> dict[str, float]:
    """Sampled seconds per step of a py-spy ``raw`` (collapsed stacks) file."""
    by_step: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        step = OTHER
        for frame in reversed(stack.split(";")):
            hit = next((name for name, keys in STEPS if any(k in frame for k in keys)), None)
            if hit is not None:
                step = hit
                break
        by_step[step] += int(count)
    return {name: by_step[name] / RATE for name, _ in (*STEPS, (OTHER, ())) if by_step[name]}


def record(root: Path, services: int, out: Path, limit_s: float = 300.0) -> float:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy (the dev extra has it)")
    port = free_port("127.0.0.1")
    argv = [
        spy, "record", "-r", str(RATE), "-f", "raw", "-o", str(out), "--",
        sys.executable, "-m", "controlplane.cli", "serve", str(root),
        "--xds", f"127.0.0.1:{port}", "--dns", "off", "--api", "off",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while clusters_served(port, 2.0, region=FIRST_GROUP) < services:
            if proc.poll() is not None or time.perf_counter() - start > limit_s:
                raise SystemExit("ubiq serve under py-spy exited or never served")
            time.sleep(0.02)
        served = time.perf_counter() - start
    finally:
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        for child in children:  # the server: py-spy then writes its file and exits
            os.kill(int(child), signal.SIGTERM)
        proc.wait(60)
    return served


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/cold_profile.txt"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ubiq-cold-") as tmp:
        write_policy(Path(tmp), args.services)
        served = record(Path(tmp), args.services, args.out)
    steps = split(args.out)
    total = sum(steps.values())
    print(f"CDS served in {FIRST_GROUP} after {served:.2f} s (wall, under py-spy)")
    print(f"{'step':<64} {'sampled s':>10} {'share':>6}")
    for name, seconds in steps.items():
        print(f"{name:<64} {seconds:>10.2f} {seconds / total:>6.0%}")
    with open("/proc/loadavg") as f:
        print(f"load average: {' '.join(f.read().split()[:3])}; raw profile: {args.out}")


if __name__ == "__main__":
    main()
