"""What the xDS integration tests share: servers and runtimes on their own loop, and waiting for
a client to ACK a snapshot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from controlplane.policy.model import Model
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.compiler import CompileOptions
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.runtime import XdsRuntime
from controlplane.xds.server import XdsServer
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import ProxyStatus, StatusRegistry
from controlplane.xds.tls import ReloadingTls
from tests.support.loop import loop_thread
from tests.support.poll import wait_until

TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE)


@dataclass
class XdsServerThread:
    """An XdsServer on its own event loop in a thread, so tests can block on Envoy freely."""

    server: XdsServer
    port: int
    loop: asyncio.AbstractEventLoop


@contextlib.contextmanager
def xds_server_thread(server: XdsServer, port: int = 0) -> Iterator[XdsServerThread]:
    """Run ``server`` on 127.0.0.1 (any port by default) until the block ends."""
    with loop_thread("xds-server") as lt:
        bound = lt.run(server.start(f"127.0.0.1:{port}"))
        try:
            yield XdsServerThread(server=server, port=bound, loop=lt.loop)
        finally:
            lt.run(server.stop(0.5))


@contextlib.contextmanager
def runtime_thread(
    model: Model,
    options: CompileOptions | None = None,
    *,
    tls: ReloadingTls | None = None,
    status: StatusRegistry | None = None,
) -> Iterator[tuple[XdsRuntime, int, asyncio.AbstractEventLoop]]:
    """Ubiq's xDS runtime on its own event loop in a thread, as ``ubiq serve`` runs it;
    ``status``: the registry it reports to (a new one by default)."""
    with loop_thread("xds-runtime") as lt:
        cache = SnapshotCache()
        status = status if status is not None else StatusRegistry()
        runtime = XdsRuntime(
            cache, status, XdsServer(cache, status=status, tls=tls), options or CompileOptions()
        )
        try:
            port = lt.run(runtime.start("127.0.0.1:0", model), 20)
            yield runtime, port, lt.loop
        finally:
            lt.run(runtime.stop())


def proxy_status(status: StatusRegistry, node_id: str) -> ProxyStatus | None:
    return next((p for p in status.proxies() if p.node_id == node_id), None)


def wait_acked(
    status: StatusRegistry,
    node_id: str,
    snapshot: Snapshot,
    *,
    timeout: float = 20.0,
    nacked_before: bool = False,
    group: str | None = None,
    mode: str | None = None,
) -> None:
    """Wait until ``node_id`` ACKed every type of ``snapshot``. Unless ``nacked_before``, the
    client must not have NACKed anything (the timeout's error then shows the NACK)."""

    def acked() -> bool:
        p = proxy_status(status, node_id)
        if p is None:
            return False
        assert nacked_before or p.last_nack is None, p.last_nack
        if group is not None:
            assert p.group == group, p
        if mode is not None:
            assert p.mode == mode, p
        return all(p.acked.get(t) == snapshot.type_version(t) for t in TYPES)

    wait_until(acked, timeout, f"{node_id} ACK of {snapshot.version}")
