"""xDS compile time for generated models: full compile, memoised recompile, one service.

    .venv/bin/python -m bench.xds_compile [--services 1000 10000]

Incremental rows: the changed model is rebuilt from new (equal, not identical) document objects, as
a reload from disk gives; "diff + compile" is ``diff`` + ``recompile_node`` for one node; "snapshot
build (with reuse)" is ``Snapshot.build(previous=...)`` on that result; the runtime row is
``build_groups`` (diff, recompile and snapshot for each of the 3 node groups), the whole compile
step of ``XdsRuntime.update_model``. The two RouteConfiguration rows compare, in the same run,
building the 10k-virtual-host message whole and serializing it (what a RoutePolicy change cost
before) with splicing the cached per-host bytes (what it costs now); their bytes are equal.

Each service: 1 port, 3 regions x 3 endpoints, one RoutePolicy (host + one route). Models are
built two ways (``load_texts`` from YAML, and document objects directly) and timed apart from
compiling. Baseline, same run: constructing + serializing the same number of minimal Cluster
protos (the floor any compiler pays), reported as a ratio. The model is gc.freeze()d once built.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2

from controlplane.policy import loader
from controlplane.policy.diff import diff
from controlplane.policy.documents import AnyDocument, Cluster, RoutePolicy, Service
from controlplane.policy.loader import load_texts
from controlplane.policy.model import Model
from controlplane.xds.compiler import CompileCache, CompileOptions, NodeIdentity
from controlplane.xds.compiler.effective import ModelIndex
from controlplane.xds.compiler.generate import compile_node as compile_full
from controlplane.xds.compiler.incremental import recompile_node
from controlplane.xds.compiler.memo import build_service_resources
from controlplane.xds.compiler.route_wire import route_configuration
from controlplane.xds.compiler.routes import build_route_configuration, build_virtual_host
from controlplane.xds.resources import PreSerialized
from controlplane.xds.runtime import build_groups
from controlplane.xds.snapshot import Snapshot

REGIONS = ("eu-west", "us-west", "ap-south")
RESULTS = Path(__file__).parent / "results"
NODE = NodeIdentity("eu-west", "eu-west", "eu-west-1a")
OPTIONS = CompileOptions()


def service_yaml(i: int, last_octet: int = 1) -> str:
    eps = ", ".join(
        f"{{cluster: {r}, address: 10.{j}.{i // 250}.{(i % 250) + k * 0 + last_octet}, port: {8000 + k}}}"
        for j, r in enumerate(REGIONS)
        for k in range(3)
    )
    return (
        f"apiVersion: ubiq.io/v1alpha1\nkind: Service\nmetadata: {{name: svc-{i}}}\n"
        f"spec: {{ports: [{{port: 8080}}], endpoints: [{eps}]}}\n---\n"
        f"apiVersion: ubiq.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: svc-{i}}}\n"
        f"spec: {{hosts: [svc-{i}.mesh.example], http: [{{route: [{{service: svc-{i}}}]}}]}}\n"
    )


def texts(n: int) -> list[tuple[str, str]]:
    clusters = "".join(
        f"---\napiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {{name: {r}}}\nspec: {{region: {r}, zone: {r}-1a}}\n"
        for r in REGIONS
    )
    return [("clusters.yaml", clusters)] + [(f"svc-{i}.yaml", service_yaml(i)) for i in range(n)]


def documents(n: int, last_octet: int = 1) -> list[AnyDocument]:
    docs: list[AnyDocument] = [
        Cluster.model_validate({"metadata": {"name": r}, "spec": {"region": r, "zone": f"{r}-1a"}})
        for r in REGIONS
    ]
    for i in range(n):
        docs.append(service_doc(i, last_octet))
        docs.append(
            RoutePolicy.model_validate(
                {
                    "metadata": {"name": f"svc-{i}"},
                    "spec": {
                        "hosts": [f"svc-{i}.mesh.example"],
                        "http": [{"route": [{"service": f"svc-{i}"}]}],
                    },
                }
            )
        )
    return docs


def route_doc(i: int, prefix: str = "/") -> RoutePolicy:
    return RoutePolicy.model_validate(
        {
            "metadata": {"name": f"svc-{i}"},
            "spec": {
                "hosts": [f"svc-{i}.mesh.example"],
                "http": [
                    {"match": [{"path": {"prefix": prefix}}], "route": [{"service": f"svc-{i}"}]}
                ],
            },
        }
    )


def service_doc(i: int, last_octet: int = 1) -> Service:
    eps = [
        {"cluster": r, "address": f"10.{j}.{i // 250}.{(i % 250) + last_octet}", "port": 8000 + k}
        for j, r in enumerate(REGIONS)
        for k in range(3)
    ]
    return Service.model_validate(
        {"metadata": {"name": f"svc-{i}"}, "spec": {"ports": [{"port": 8080}], "endpoints": eps}}
    )


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def baseline(n: int) -> int:
    size = 0
    for i in range(n):
        c = cluster_pb2.Cluster(name=f"svc-{i}", type=cluster_pb2.Cluster.EDS)
        size += len(c.SerializeToString(deterministic=True))
    return size


def serialize_all(resources: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes of every resource; held bytes (RDS, EDS: ``PreSerialized``) as they are."""
    total = 0
    for by in resources.values():
        if isinstance(by, PreSerialized):
            total += sum(len(by.serialized(name)) for name in by)
        else:
            total += sum(len(m.SerializeToString(deterministic=True)) for m in by.values())
    return total


def compile_node(model: Model, node: NodeIdentity, options: CompileOptions, **kw: Any) -> Any:
    """The runtime's compile (``NodeCompilation.resources``: EDS and RDS held as bytes; the
    messages are not parsed from them)."""
    return compile_full(model, node, options, **kw).resources


def run(n: int) -> list[dict[str, Any]]:
    # n services + n RoutePolicies: at 10k past the loader's MAX_DOCUMENTS (10,000); this
    # bench measures the compiler, so the bound is lifted in this process only
    loader.MAX_DOCUMENTS = max(loader.MAX_DOCUMENTS, 2 * n + len(REGIONS))
    rows: list[dict[str, Any]] = []
    base, _ = timed(lambda: baseline(n))

    def row(case: str, seconds: float) -> None:
        rows.append({"services": n, "case": case, "seconds": seconds, "ratio": seconds / base})

    row(f"baseline: {n} minimal Cluster protos built+serialized", base)
    load_s, _ = timed(lambda: load_texts(texts(n)), repeat=1)
    row("load_texts (YAML -> Model)", load_s)
    direct_s, model = timed(lambda: Model.build(documents(n)), repeat=1)
    row("documents built directly -> Model", direct_s)
    # a long-lived model is what gc.freeze() is for: without it every gen-2 collection walks
    # 10k+ pydantic documents and the figures below vary by 2-3x from run to run
    gc.collect()
    gc.freeze()
    full_s, resources = timed(lambda: compile_node(model, NODE, OPTIONS))
    row("compile, no cache", full_s)
    row("serialize every compiled resource", timed(lambda: serialize_all(resources))[0])

    cache = CompileCache()
    cold_s, _ = timed(lambda: compile_node(model, NODE, OPTIONS, cache=cache), repeat=1)
    row("compile, cold cache", cold_s)
    warm_s, _ = timed(lambda: compile_node(model, NODE, OPTIONS, cache=cache))
    row("recompile, warm cache, nothing changed", warm_s)
    changed = Model.build(
        [
            service_doc(0, last_octet=2) if d.kind == "Service" and d.name == "svc-0" else d
            for d in model.documents()
        ]
    )
    one_s, _ = timed(lambda: compile_node(changed, NODE, OPTIONS, cache=cache), repeat=1)
    row("recompile, warm cache, one service changed", one_s)

    index = ModelIndex(changed)
    policy = changed.route_policies["svc-0"]

    def one_service() -> None:
        build_service_resources(index, "svc-0", NODE, OPTIONS)
        build_virtual_host(policy, 10000, index.cluster_name, index.hash_key)

    row("compile one service (clusters+CLA+vhost)", timed(one_service, repeat=20)[0])

    # incremental: a reload gives new, equal documents; only svc-0's Service really changed
    reloaded = Model.build(documents(n))
    edited = Model.build(
        [
            service_doc(0, last_octet=2) if d.kind == "Service" and d.name == "svc-0" else d
            for d in documents(n)
        ]
    )
    gc.collect()
    gc.freeze()
    start = compile_full(model, NODE, OPTIONS)
    full_snap_s, start_snap = timed(lambda: Snapshot.build(start.resources), repeat=1)
    row("snapshot build, full (every resource serialized)", full_snap_s)
    row("diff (reload, one Service changed)", timed(lambda: diff(reloaded, edited))[0])
    row(
        "incremental recompile, nothing changed (diff + compile)",
        timed(lambda: recompile_node(start, reloaded, diff(model, reloaded)))[0],
    )
    inc_s, inc = timed(lambda: recompile_node(start, edited, diff(model, edited)), repeat=5)
    row("incremental recompile, one service changed (diff + compile)", inc_s)
    reuse_s, _ = timed(
        lambda: Snapshot.build(
            inc.resources, previous=start_snap, previous_resources=start.resources
        ),
        repeat=5,
    )
    row("snapshot build, one service changed (with reuse)", reuse_s)
    groups = build_groups(model, OPTIONS)
    row(
        "runtime: 3 groups, one service changed (diff+compile+snapshot)",
        timed(lambda: build_groups(edited, OPTIONS, groups), repeat=5)[0],
    )
    policy_changed = Model.build(
        [
            route_doc(0, "/v2") if d.kind == "RoutePolicy" and d.name == "svc-0" else d
            for d in documents(n)
        ]
    )
    policy_s, _ = timed(lambda: build_groups(policy_changed, OPTIONS, groups), repeat=5)
    row("runtime: 3 groups, one RoutePolicy changed", policy_s)
    row("runtime: one RoutePolicy changed, per group", policy_s / len(groups))
    hosts = next(iter(groups.values())).compilation.virtual_hosts
    name = OPTIONS.route_config_name

    def whole() -> bytes:
        messages = [h.message for h in hosts.values()]
        data: bytes = build_route_configuration(name, messages).SerializeToString(
            deterministic=True
        )
        return data

    whole_s, whole_bytes = timed(whole, repeat=5)
    row(f"RouteConfiguration ({len(hosts)} hosts) built whole + serialized (before)", whole_s)
    splice_s, spliced = timed(
        lambda: route_configuration(name, hosts.values()).serialized(name), repeat=5
    )
    assert spliced == whole_bytes
    row(f"RouteConfiguration ({len(hosts)} hosts) spliced from per-host bytes", splice_s)
    gc.unfreeze()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    rows = [r for n in args.services for r in run(n)]
    print(f"{'services':>8}  {'case':<64} {'seconds':>10} {'x baseline':>10}")
    for r in rows:
        print(f"{r['services']:>8}  {r['case']:<64} {r['seconds']:>10.4f} {r['ratio']:>10.2f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "xds_compile.json"
    out.write_text(json.dumps({"python": platform.python_version(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
