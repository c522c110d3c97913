"""Cold start: a policy directory of N services -> the first xDS snapshot served.

    .venv/bin/python -m bench.cold_start [--services 10000] [--rounds 2]

The directory: ``clusters.yaml`` (3 clusters) and the services in files of 10 (each service a
Service with 1 port and 3 regions x 3 endpoints, and a RoutePolicy: bench/xds_compile.py's
``service_yaml``); 10,000 services are 20,003 documents in 1,001 files.

In-process rows (imports done; each round builds everything anew), in CPU seconds of this
process:

- baseline: read every file and ``yaml.load_all`` it with PyYAML's C loader (plain data, no
  line numbers, no validation) - the floor a YAML policy pays with PyYAML;
- ``load_directory`` with the YAML reader before the cold-start work (kept in
  tests/support/policy_reference_yaml.py), the rest of the loader as it is now;
- ``load_directory`` (files -> typed documents -> cross-checks -> Model) in this thread only;
  then, wall clock, the same and with the parse worker processes an idle machine would start
  (``policy.parallel_parse``: one fewer than the CPUs; ``ubiq serve`` starts them only for idle
  CPUs, by load average), and the CPU of this process and the workers together;
- ``build_groups``: compile + snapshot for every node group (one per cluster), what
  ``ubiq serve`` publishes before it opens the xDS port; beside it, every group compiled alone
  (tests/support/xds_per_group.py: what ``build_groups`` did before ``compiler.shared``);
- the two together: directory -> first snapshots ready.

Process rows, wall clock: ``python -m controlplane.cli --version`` (interpreter + imports, the floor of any
``ubiq`` command), and ``ubiq serve DIR --dns off --api off`` from exec until an ADS client
has received the CDS response with every service's cluster: first a node in ap-south (the first
group built: the first snapshot served), then one in eu-west (the second group). Ratios are
against the baseline row of the same round; min-max over rounds. ``--before DIR`` (a tree from
``git archive REV``) adds the two exec rows run from that tree, in the same rounds.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from bench._common import save
from bench.xds_compile import REGIONS, service_yaml
from controlplane.policy import loader
from controlplane.policy.parallel_parse import usable_cpus
from controlplane.ports import free_port
from controlplane.xds.compiler import CompileOptions
from controlplane.xds.runtime import build_groups

PER_FILE = 10


def write_policy(root: Path, services: int) -> None:
    clusters = "".join(
        f"---\napiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {{name: {r}}}\n"
        f"spec: {{region: {r}, zone: {r}-1a}}\n"
        for r in REGIONS
    )
    (root / "clusters.yaml").write_text(clusters)
    for first in range(0, services, PER_FILE):
        docs = [service_yaml(i) for i in range(first, min(first + PER_FILE, services))]
        (root / f"svc-{first:05d}.yaml").write_text("---\n".join(docs))


def bare_yaml(root: Path) -> int:
    count = 0
    for path in sorted(root.glob("*.yaml")):
        count += sum(1 for _ in yaml.load_all(path.read_bytes(), Loader=yaml.CSafeLoader))
    return count


def load_before(root: Path) -> Any:
    from tests.support import policy_reference_yaml as reference

    saved = getattr(loader, "parse_documents")  # noqa: B009
    setattr(loader, "parse_documents", reference.parse_documents)  # noqa: B010
    try:
        return loader.load_directory(root)
    finally:
        setattr(loader, "parse_documents", saved)  # noqa: B010


def wall_and_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process and of the children it waited for, result):
    the parse workers' CPU is their own process's."""
    gc.collect()
    before = _cpu_with_children()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, _cpu_with_children() - before, result


def _cpu_with_children() -> float:
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def first_snapshots(root: Path) -> Any:
    return build_groups(loader.load_directory(root), CompileOptions())


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """CPU seconds of ``fn`` (this process): on a shared, loaded machine the wall clock mostly
    measures the other processes; the exec rows can only be wall clock."""
    gc.collect()
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def groups_of(model: Any) -> float:
    return timed(lambda: build_groups(model, CompileOptions()))[0]


def groups_alone(model: Any) -> float:
    from tests.support.xds_per_group import per_group_snapshots

    return timed(lambda: per_group_snapshots(model, CompileOptions()))[0]


def version_exec(tree: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "--version"],
        check=True,
        capture_output=True,
        cwd=tree,
    )
    return time.perf_counter() - start


FIRST_GROUP = "ap-south"  # the first node group ``build_groups`` builds (clusters by name)
CLIENT_GROUPS = (FIRST_GROUP, "eu-west")


def clusters_served(port: int, timeout: float, region: str = "eu-west") -> int:
    """Resources in the first CDS response to a node in ``region``, or -1 if none came in
    time."""
    import grpc
    from envoy.config.core.v3 import base_pb2
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

    from controlplane.xds.resources import CLUSTER

    request = discovery_pb2.DiscoveryRequest(
        node=base_pb2.Node(id=f"bench-cold-{region}", cluster=region), type_url=CLUSTER
    )

    done = threading.Event()

    def requests() -> Iterator[Any]:
        yield request
        done.wait(timeout)  # keep the stream open (as Envoy does) until the answer came

    options = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call = stub.StreamAggregatedResources(requests(), timeout=timeout, wait_for_ready=False)
        try:
            response = next(iter(call))
        except (grpc.RpcError, StopIteration):
            return -1
        finally:
            done.set()
            call.cancel()
        return len(response.resources)


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def serve_until_served(
    root: Path,
    services: int,
    limit_s: float = 300.0,
    tree: Path | None = None,
    groups: Sequence[str] = CLIENT_GROUPS,
    cpu: dict[str, float] | None = None,
) -> dict[str, float]:
    """Seconds from exec of ``ubiq serve`` (the code in ``tree``, default this checkout) until a
    client of each of ``groups`` (in turn) has every service's cluster; ``cpu``, if given, gets
    the server's CPU seconds at each of those moments."""
    port = free_port("127.0.0.1")
    argv = [
        sys.executable, "-m", "controlplane.cli", "serve", str(root),
        "--xds", f"127.0.0.1:{port}", "--dns", "off", "--api", "off",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tree)
    served: dict[str, float] = {}
    try:
        for region in groups:
            while region not in served:
                if time.perf_counter() - start > limit_s:
                    raise RuntimeError(
                        f"ubiq serve did not serve {services} clusters in {limit_s} s"
                    )
                if proc.poll() is not None:
                    raise RuntimeError(f"ubiq serve exited: {proc.stderr.read()[-2000:]!r}")  # type: ignore[union-attr]
                if clusters_served(port, timeout=2.0, region=region) >= services:
                    served[region] = time.perf_counter() - start
                    if cpu is not None:
                        cpu[region] = cpu_of(proc.pid)
                else:
                    time.sleep(0.02)
        return served
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stages(root: Path) -> dict[str, float]:
    """CPU seconds of each step of ``load_directory`` and of the first snapshots (one round)."""
    from controlplane.policy import yamlsource
    from controlplane.policy.advice import policy_warnings
    from controlplane.policy.crosscheck import Located, cross_check
    from controlplane.policy.model import Model, SourceRef
    from controlplane.policy.validate import validate_document

    out: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        start = time.process_time()
        result = fn()
        out[name] = time.process_time() - start
        return result

    gc.collect()
    gc.disable()
    try:
        paths = sorted(root.glob("*.yaml"))
        texts = step("read + decode files", lambda: [(str(p), p.read_text()) for p in paths])
        step(
            "YAML compose (libyaml + PyYAML nodes)",
            lambda: [list(yaml.compose_all(t, Loader=yamlsource._Loader)) for _, t in texts],
        )
        raws = step(
            "YAML compose + convert (parse_documents)",
            lambda: [r for n, t in texts for r in yamlsource.parse_documents(t, n)],
        )
        docs = step("validate (pydantic)", lambda: [validate_document(r) for r in raws])
        located = [Located(d, r) for d, r in zip(docs, raws, strict=True)]
        step("cross_check", lambda: cross_check(located))
        warnings = step("policy_warnings", lambda: policy_warnings(located))
        sources = {(i.doc.kind, i.doc.name): SourceRef(i.raw.file, i.raw.line) for i in located}
        model = step("Model.build (index + hashes)", lambda: Model.build(docs, sources, warnings))  # type: ignore[arg-type]
        step(
            "build_groups (compile + snapshot, every group)",
            lambda: build_groups(model, CompileOptions()),
        )
    finally:
        gc.enable()
    return out


def run(services: int, rounds: int, before: Path | None = None) -> list[dict[str, Any]]:
    by_case: dict[str, list[tuple[float, float]]] = {}

    def add(case: str, seconds: float, base: float) -> None:
        by_case.setdefault(case, []).append((seconds, seconds / base))

    with tempfile.TemporaryDirectory(prefix="ubiq-cold-") as tmp:
        root = Path(tmp)
        write_policy(root, services)
        workers = max(1, usable_cpus() - 1)  # what an idle machine would start
        for number in range(rounds):
            base, docs = timed(lambda: bare_yaml(root))
            add(f"baseline: read + yaml.load_all (C loader), {docs} documents", base, base)
            add(
                "load_directory, YAML reader before this work",
                timed(lambda: load_before(root))[0],
                base,
            )
            load_s, model = timed(lambda: loader.load_directory(root, workers=0))
            add("load_directory (files -> Model), this thread only", load_s, base)
            del model
            wall, cpu, _ = wall_and_cpu(lambda: loader.load_directory(root, workers=0))
            add("load_directory, this thread only: wall", wall, base)
            wall, cpu, model = wall_and_cpu(lambda: loader.load_directory(root, workers=workers))
            add(f"load_directory, {workers} parse worker(s): wall", wall, base)
            add("load_directory, parse worker(s): CPU incl. workers", cpu, base)
            add("build_groups, every group compiled alone (before)", groups_alone(model), base)
            add("build_groups: compile + snapshot, every group", groups_of(model), base)
            del model
            add(
                "directory -> first snapshots (in process)",
                timed(lambda: first_snapshots(root))[0],
                base,
            )
            add("exec: ubiq --version (interpreter + imports)", version_exec(), base)
            trees = [("", None)] + ([(", --before tree", before)] if before is not None else [])
            if number % 2:  # the load moves: each tree runs first in every other round
                trees.reverse()
            for label, tree in trees:
                if tree is not None:
                    add(f"exec: ubiq --version{label}", version_exec(tree), base)
                for region, seconds in serve_until_served(root, services, tree=tree).items():
                    first = " (first group built)" if region == FIRST_GROUP else ""
                    add(f"exec: ubiq serve -> CDS served in {region}{first}{label}", seconds, base)
    return [
        {
            "services": services,
            "case": case,
            "seconds_min": min(s for s, _ in values),
            "seconds_max": max(s for s, _ in values),
            "ratio_min": min(r for _, r in values),
            "ratio_max": max(r for _, r in values),
        }
        for case, values in by_case.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--before",
        type=str,
        default=None,
        help="a source tree of an earlier commit (git archive REV | tar -x -C DIR): its exec"
        " rows are run in the same rounds, with this venv",
    )
    args = parser.parse_args()
    rows = run(args.services, args.rounds, Path(args.before) if args.before else None)
    with tempfile.TemporaryDirectory(prefix="ubiq-cold-") as tmp:
        write_policy(Path(tmp), args.services)
        cpu = stages(Path(tmp))
    print(f"{'step (one round, CPU seconds)':<62} {'seconds':>18}")
    for name, seconds in cpu.items():
        print(f"{name:<62} {seconds:>18.2f}")
    print(f"{'case':<62} {'seconds (min-max)':>18} {'x baseline':>12}")
    for r in rows:
        secs = f"{r['seconds_min']:.2f}-{r['seconds_max']:.2f}"
        ratio = f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"
        print(f"{r['case']:<62} {secs:>18} {ratio:>12}")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"load average: {' '.join(load)}")
    print(f"wrote {save('cold_start', args, rows=rows, stages=cpu, loadavg=load)}")


if __name__ == "__main__":
    main()
