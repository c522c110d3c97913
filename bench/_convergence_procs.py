"""The processes bench.xds_convergence starts: Ubiq (timed at each stage) and the demo backends.

Both are ``multiprocessing`` targets (spawn): ``(..., ready, stop)`` -- set ``ready`` once
serving, return soon after ``stop`` is set. The policy set is one service ``web`` with subsets
v1/v2 and, per Ubiq cluster ``cNN`` (one per Envoy), one v1 and one v2 endpoint on
127.0.(40+N).1 / .2.
"""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from typing import Any


def routes_yaml(version: str) -> str:
    """The only file the benchmark rewrites: all traffic to ``version`` (100/0 or 0/100)."""
    v1, v2 = (100, 0) if version == "v1" else (0, 100)
    return (
        "apiVersion: ubiq.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: web}\n"
        'spec:\n  hosts: ["*"]\n  http:\n  - route:\n'
        f"    - {{service: web, subset: v1, weight: {v1}}}\n"
        f"    - {{service: web, subset: v2, weight: {v2}}}\n"
    )


def endpoint_address(index: int, version: str) -> str:
    return f"127.0.{40 + index}.{1 if version == 'v1' else 2}"


def bulk_yaml(clusters: int, services: int) -> str:
    """``services`` more services (one endpoint per cluster, never called) and a RoutePolicy
    each: what a loaded control plane holds beside the one route the benchmark flips."""
    docs = []
    for i in range(services):
        eps = ", ".join(
            f"{{cluster: c{c:02d}, address: 10.{c}.{i // 250}.{i % 250 + 1}}}"
            for c in range(clusters)
        )
        docs.append(
            f"apiVersion: ubiq.io/v1alpha1\nkind: Service\nmetadata: {{name: bulk-{i}}}\n"
            f"spec: {{ports: [{{port: 8080}}], endpoints: [{eps}]}}\n---\n"
            f"apiVersion: ubiq.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: bulk-{i}}}\n"
            f"spec: {{hosts: [bulk-{i}.mesh.example], http: [{{route: [{{service: bulk-{i}}}]}}]}}\n"
        )
    return "---\n".join(docs)


def policy_files(clusters: int, port: int, services: int = 0) -> dict[str, str]:
    docs = [
        "apiVersion: ubiq.io/v1alpha1\nkind: Cluster\n"
        f"metadata: {{name: c{i:02d}}}\nspec: {{region: r{i:02d}}}\n"
        for i in range(clusters)
    ]
    endpoints = "".join(
        f"  - {{cluster: c{i:02d}, address: {endpoint_address(i, v)}, port: {port},"
        f" labels: {{version: {v}}}}}\n"
        for i in range(clusters)
        for v in ("v1", "v2")
    )
    service = (
        "apiVersion: ubiq.io/v1alpha1\nkind: Service\nmetadata: {name: web}\nspec:\n"
        f"  ports: [{{name: http, port: {port}, protocol: HTTP}}]\n"
        "  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n"
        "  endpoints:\n" + endpoints
    )
    bulk = {"bulk.yaml": bulk_yaml(clusters, services)} if services else {}
    return {
        **bulk,
        "clusters.yaml": "---\n".join(docs),
        "services.yaml": service,
        "routes.yaml": routes_yaml("v1"),
    }


# -- backends ---------------------------------------------------------------------------------


def backend_process(clusters: int, port: int, ready: Any, stop: Any) -> None:
    asyncio.run(_backends(clusters, port, ready, stop))


async def _backends(clusters: int, port: int, ready: Any, stop: Any) -> None:
    from controlplane.demo.backends import DemoBackend

    backends = [
        DemoBackend("web", f"c{i:02d}", v, endpoint_address(i, v), port)
        for i in range(clusters)
        for v in ("v1", "v2")
    ]
    for backend in backends:
        await backend.start()
    ready.set()
    try:
        while not stop.is_set():
            await asyncio.sleep(0.1)
    finally:
        for backend in backends:
            await backend.stop()


# -- Ubiq, with timestamps at each stage -------------------------------------------------------


def ubiq_process(
    directory: str,
    xds_port: int,
    listener_ports: dict[str, int],
    debounce_ms: int,
    watch_step_ms: int | None,
    vhds: bool,
    events: Any,
    ready: Any,
    stop: Any,
) -> None:
    asyncio.run(
        _ubiq(
            directory,
            xds_port,
            listener_ports,
            debounce_ms,
            watch_step_ms,
            vhds,
            events,
            ready,
            stop,
        )
    )


async def _ubiq(
    directory: str,
    xds_port: int,
    listener_ports: dict[str, int],
    debounce_ms: int,
    watch_step_ms: int | None,
    vhds: bool,
    events: Any,
    ready: Any,
    stop: Any,
) -> None:
    """``ubiq serve DIR --dns off --api off --listener-address 127.0.0.1``, per-cluster ports
    (and ``--xds-vhds`` with ``vhds``).

    Timing wrappers around the stages put ``(stage, monotonic time, detail)`` on ``events``:
    watch (watchfiles yielded a batch), loaded (load + validate + swap done), compiled,
    published (one group's snapshot swapped in), sent / acked (RDS or VHDS response to / ACK
    from a node: with VHDS the RouteConfiguration never changes, the virtual host does).
    """
    import watchfiles

    import controlplane.xds.runtime as runtime_module
    from controlplane.logging import configure_logging
    from controlplane.policy.store import DirectoryStore
    from controlplane.serve import ServeOptions, Ubiq
    from controlplane.xds.bootstrap import XDS_CLUSTER
    from controlplane.xds.compiler.options import CompileOptions
    from controlplane.xds.events import Acked, Response
    from controlplane.xds.resources import ROUTE, VIRTUAL_HOST

    routes = (ROUTE, VIRTUAL_HOST)

    configure_logging("warning")

    def emit(stage: str, detail: str = "") -> None:
        events.put((stage, time.monotonic(), detail))

    if watch_step_ms:
        # the store calls ``watchfiles.awatch(..., step=20)``; this process only
        watchfiles.awatch = functools.partial(_awatch_with_step, watchfiles.awatch, watch_step_ms)

    build_groups = runtime_module.build_groups

    def timed_compile(*args: Any, **kwargs: Any) -> Any:
        out = build_groups(*args, **kwargs)  # the runtime's compile (worker thread)
        emit("compiled")
        return out

    runtime_module.build_groups = timed_compile

    options = ServeOptions(
        directory=Path(directory),
        xds=("127.0.0.1", xds_port),
        dns=(),
        api=None,
        compile=CompileOptions(
            listener_address="127.0.0.1",
            listener_ports=listener_ports,
            vhds_cluster=XDS_CLUSTER if vhds else None,
        ),
        debounce_ms=debounce_ms,
    )
    ubiq = Ubiq(options)
    store = ubiq.store
    assert isinstance(store, DirectoryStore)
    reload, set_snapshot = store.reload, ubiq.xds.cache.set_snapshot
    status = ubiq.xds.status
    connect, record, sent = status.connect, status.record, status.sent
    nodes: dict[int, str] = {}

    async def timed_reload() -> bool:
        emit("watch")
        changed: bool = await reload()
        emit("loaded", str(changed))
        return changed

    def timed_set_snapshot(group: str, snapshot: Any, *, checked: bool = False) -> bool:
        changed = set_snapshot(group, snapshot, checked=checked)
        if changed:
            emit("published", group)
        return changed

    def timed_connect(stream_id: int, node: Any, group: str, mode: str) -> None:
        nodes[stream_id] = node.id
        connect(stream_id, node, group, mode)

    def timed_record(stream_id: int, event: Any) -> None:
        if isinstance(event, Acked) and event.type_url in routes:
            emit("acked", nodes.get(stream_id, ""))
        record(stream_id, event)

    def timed_sent(stream_id: int, response: Response) -> None:
        if response.type_url in routes:
            emit("sent", nodes.get(stream_id, ""))
        sent(stream_id, response)

    store.reload = timed_reload  # type: ignore[method-assign]
    ubiq.xds.cache.set_snapshot = timed_set_snapshot  # type: ignore[method-assign]
    status.connect = timed_connect  # type: ignore[method-assign]
    status.record = timed_record  # type: ignore[method-assign]
    status.sent = timed_sent  # type: ignore[method-assign]

    await ubiq.start()
    ready.set()
    try:
        while not stop.is_set():
            await asyncio.sleep(0.05)
    finally:
        await ubiq.stop()


def _awatch_with_step(awatch: Any, step_ms: int, *args: Any, **kwargs: Any) -> Any:
    return awatch(*args, **{**kwargs, "step": step_ms})
