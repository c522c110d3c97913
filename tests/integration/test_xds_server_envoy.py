"""A real Envoy fed by the ADS server, in SotW and Delta: ACKs, traffic, updates, NACK, removal."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controlplane.xds.bootstrap import Mode
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.node import group_key
from controlplane.xds.resources import ROUTE
from controlplane.xds.server import XdsServer
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import ProxyStatus, StatusRegistry
from tests.support.envoy import EnvoyProcess, dynamic_names, envoy, http_backend
from tests.support.poll import wait_until
from tests.support.procs import free_port
from tests.support.xds_resources import ROUTE_HEADER, make_resources
from tests.support.xds_rig import TYPES, wait_acked, xds_server_thread

pytestmark = pytest.mark.integration

GROUP = group_key("eu-west-1")


class Rig:
    def __init__(self, cache: SnapshotCache, status: StatusRegistry, proxy: EnvoyProcess,
                 listener_port: int, backends: dict[str, int]) -> None:  # fmt: skip
        self.cache = cache
        self.status = status
        self.proxy = proxy
        self.listener_port = listener_port
        self.backends = backends

    def publish(self, route_to: str, tag: str, *, clusters: list[str] | None = None,
                regex: str | None = None) -> Snapshot:  # fmt: skip
        names = clusters if clusters is not None else list(self.backends)
        resources = make_resources(
            self.listener_port, {n: [self.backends[n]] for n in names}, route_to, tag, regex
        )
        snapshot = Snapshot.build(resources)
        self.cache.set_snapshot(GROUP, snapshot)
        return snapshot

    def proxy_status(self) -> ProxyStatus:
        (status,) = [p for p in self.status.proxies() if p.node_id == self.proxy.node_id]
        return status

    def wait_acked(self, snapshot: Snapshot) -> None:
        try:
            wait_acked(self.status, self.proxy.node_id, snapshot, timeout=15, nacked_before=True)
        except TimeoutError as exc:
            want = {t: snapshot.type_version(t) for t in TYPES}
            raise AssertionError(f"{exc}: want {want}, have {self.proxy_status()}") from None

    def get(self) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.listener_port}/", timeout=2)

    def wait_served(self, tag: str, body: str) -> None:
        def served() -> bool:
            reply = self.get()
            return reply.headers.get(ROUTE_HEADER) == tag and reply.text == body

        wait_until(served, 15, f"traffic through route {tag} to {body}")


@contextlib.contextmanager
def rig(tmp_path: Path, mode: Mode) -> Iterator[Rig]:
    cache, status = SnapshotCache(), StatusRegistry()
    with (
        http_backend("a") as port_a,
        http_backend("b") as port_b,
        xds_server_thread(XdsServer(cache, status=status)) as xds,
        envoy(tmp_path, xds_port=xds.port, mode=mode) as proxy,
    ):
        yield Rig(cache, status, proxy, free_port(), {"a": port_a, "b": port_b})


MODES: list[Mode] = ["ads-sotw", "ads-delta"]


@pytest.mark.parametrize("mode", MODES)
def test_envoy_acks_serves_updates_and_survives_a_nack(tmp_path: Path, mode: Mode) -> None:
    with rig(tmp_path, mode) as r:
        first = r.publish(route_to="a", tag="v1")
        r.wait_acked(first)
        status = r.proxy_status()
        assert (status.group, status.mode) == (GROUP, mode.removeprefix("ads-"))
        assert status.locality == "eu-west/eu-west-1a"
        assert status.last_nack is None
        r.wait_served("v1", "a")
        uptime = r.proxy.stat("server.uptime")

        second = r.publish(route_to="a", tag="v2")  # live route change, no restart
        r.wait_acked(second)
        r.wait_served("v2", "a")
        assert r.proxy.stat("server.uptime") >= uptime  # same process, never restarted

        bad = r.publish(route_to="a", tag="bad", regex="(")  # Envoy rejects the bad regex
        wait_until(lambda: r.proxy_status().last_nack is not None, 15, "NACK of the bad route")
        nack = r.proxy_status().last_nack
        assert nack is not None and nack.type_url == ROUTE
        assert "missing )" in nack.message, nack.message  # RE2's own words, relayed by Envoy
        assert r.proxy_status().acked[ROUTE] == second.type_version(ROUTE)
        sent = dict(r.proxy_status().responses_sent)
        assert r.get().headers.get(ROUTE_HEADER) == "v2"  # Envoy keeps the last good route
        assert r.proxy.stat("http.http.rds.main.update_rejected") == 1

        fixed = r.publish(route_to="b", tag="v3")  # the next good change is ACKed
        r.wait_acked(fixed)
        r.wait_served("v3", "b")
        # No resend loop: the stream answers in order, so a resend of the NACKed content would
        # have been sent before the fixed snapshot's responses; only those came after the NACK.
        changed = [t for t in TYPES if fixed.type_version(t) != bad.type_version(t)]
        assert changed == [ROUTE]
        assert dict(r.proxy_status().responses_sent) == {**sent, ROUTE: sent[ROUTE] + 1}
        assert r.proxy_status().nacks == 1


@pytest.mark.parametrize("mode", MODES)
def test_cluster_swap_is_make_before_break(tmp_path: Path, mode: Mode) -> None:
    """Route moves from cluster a to a cluster b Envoy has never seen, and a is removed in the
    same snapshot: requests sent throughout never fail (b is warm before the route points at
    it, a goes only after the route has left it)."""
    with rig(tmp_path, mode) as r:
        first = r.publish(route_to="a", tag="v1", clusters=["a"])
        r.wait_acked(first)
        r.wait_served("v1", "a")
        codes: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(timeout=2) as client:
                for _ in range(2000):  # bounded in count and time
                    if stop.is_set():
                        return
                    codes.append(client.get(f"http://127.0.0.1:{r.listener_port}/").status_code)

        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            time.sleep(0.1)
            moved = r.publish(route_to="b", tag="v2", clusters=["b"])
            r.wait_acked(moved)
            r.wait_served("v2", "b")
            wait_until(
                lambda: dynamic_names(r.proxy.config_dump(), "clusters") == ["b"], 15, "a removed"
            )
            time.sleep(0.1)
        finally:
            stop.set()
            thread.join(15)
        assert codes and set(codes) == {200}, sorted(set(codes))
        assert r.proxy_status().last_nack is None


def test_delta_reconnect_sends_only_what_differs(tmp_path: Path) -> None:
    """The control plane restarts: Envoy reconnects with initial_resource_versions and is sent
    only what changed meanwhile (here: the route), not the whole configuration again."""
    cache, port, listener_port = SnapshotCache(), free_port(), free_port()
    with (
        http_backend("a") as port_a,
        envoy(tmp_path, xds_port=port, mode="ads-delta") as proxy,
    ):
        backends = {"a": [port_a]}
        first = Snapshot.build(make_resources(listener_port, backends, "a", "v1"))
        cache.set_snapshot(GROUP, first)
        r = Rig(cache, StatusRegistry(), proxy, listener_port, {"a": port_a})
        with xds_server_thread(XdsServer(cache, status=r.status), port=port):
            r.wait_acked(first)
            r.wait_served("v1", "a")
        second = Snapshot.build(make_resources(listener_port, backends, "a", "v2"))
        cache.set_snapshot(GROUP, second)  # changes while Envoy is cut off
        r.status = StatusRegistry()
        with xds_server_thread(XdsServer(cache, status=r.status), port=port):
            r.wait_acked(second)
            r.wait_served("v2", "a")
            sent = dict(r.proxy_status().responses_sent)
            assert sent == {ROUTE: 1}, sent
