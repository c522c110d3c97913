"""VHDS with real Envoys (``CompileOptions.vhds_cluster``, ``serve --xds-vhds``).

Two Envoys, one on a SotW ADS stream (eu-west), one on a Delta ADS stream (us-west); each opens
its own Delta VHDS stream (``VirtualHostDiscoveryService/DeltaVirtualHosts``) to the bootstrap's
``ubiq_xds`` cluster. The registry records what every VHDS response carried, so the test can
say which virtual hosts went out after each change.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from google.protobuf.message import Message

from controlplane.policy.loader import load_texts
from controlplane.policy.model import Model
from controlplane.xds.bootstrap import XDS_CLUSTER, Mode
from controlplane.xds.compiler import CompileOptions
from controlplane.xds.events import Response
from controlplane.xds.node import group_key
from controlplane.xds.resources import VIRTUAL_HOST
from controlplane.xds.runtime import XdsRuntime
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import ProxyStatus, StatusRegistry
from tests.support.backends import Backend, backends
from tests.support.envoy import EnvoyProcess, envoy
from tests.support.policy import cluster, join, route, service
from tests.support.poll import wait_until
from tests.support.procs import free_port
from tests.support.xds_rig import runtime_thread

pytestmark = pytest.mark.integration

ENVOYS: dict[str, Mode] = {"eu-west": "ads-sotw", "us-west": "ads-delta"}
NAMES = ("a", "b", "c", "d")
NEW = "e"  # a backend whose Service only the make-before-break test adds


class RecordingStatus(StatusRegistry):
    """The real registry, also keeping (stream, names sent, names removed) per VHDS response."""

    def __init__(self) -> None:
        super().__init__()
        self._vhds_lock = threading.Lock()
        self.vhds: list[tuple[int, tuple[str, ...], tuple[str, ...]]] = []

    def sent(self, stream_id: int, response: Response) -> None:
        super().sent(stream_id, response)
        if response.type_url == VIRTUAL_HOST:
            with self._vhds_lock:
                names = tuple(e.name for e in response.entries)
                self.vhds.append((stream_id, names, response.removed))

    def vhds_since(self, mark: int) -> list[tuple[int, tuple[str, ...], tuple[str, ...]]]:
        with self._vhds_lock:
            return list(self.vhds[mark:])


def make_model(
    started: Mapping[str, Backend], routes: Mapping[str, str], services: tuple[str, ...] = NAMES
) -> Model:
    """``services`` (endpoints in both clusters); ``routes``: host name -> service."""
    docs = [cluster(r, f"{r}-1a") for r in ENVOYS]
    for name in services:
        port = started[name].port
        eps = ", ".join(f"{{cluster: {r}, address: 127.0.0.1, port: {port}}}" for r in ENVOYS)
        docs.append(service(name, "[{port: 8080}]", f"[{eps}]"))
    docs += [route(h, f"{h}.test", to) for h, to in sorted(routes.items())]
    return load_texts([("p.yaml", join(*docs))])


@dataclass
class Rig:
    runtime: XdsRuntime
    loop: asyncio.AbstractEventLoop
    status: RecordingStatus
    envoys: dict[str, EnvoyProcess]
    ports: dict[str, int]
    started: Mapping[str, Backend]

    def publish(self, routes: Mapping[str, str], services: tuple[str, ...] = NAMES) -> None:
        update = self.runtime.update_model(make_model(self.started, routes, services))
        asyncio.run_coroutine_threadsafe(update, self.loop).result(20)
        for r in ENVOYS:
            self.wait_synced(r, self.snapshot(r))

    def snapshot(self, region: str) -> Snapshot:
        found = self.runtime.cache.get(group_key(region))
        assert found is not None
        return found

    def streams(self, region: str) -> list[ProxyStatus]:
        node = self.envoys[region].node_id
        return [p for p in self.status.proxies() if p.node_id == node]

    def vhds_stream(self, region: str) -> ProxyStatus:
        (found,) = [p for p in self.streams(region) if VIRTUAL_HOST in p.responses_sent]
        return found

    def wait_synced(self, region: str, snapshot: Snapshot) -> None:
        """Both streams of the Envoy hold ``snapshot``: ADS every other type, VHDS its own."""

        def synced() -> bool:
            streams = self.streams(region)
            acked = {t: v for p in streams for t, v in p.acked.items()}
            return len(streams) == 2 and all(
                acked.get(t) == snapshot.type_version(t) for t in snapshot.types
            )

        wait_until(synced, 20, f"{region} holds {snapshot.version}")

    def served_by(self, region: str, host: str) -> str:
        reply = httpx.get(
            f"http://127.0.0.1:{self.ports[region]}/", headers={"host": host}, timeout=5
        )
        return reply.headers.get("x-backend", str(reply.status_code))

    def wait_served(self, host: str, by: str) -> None:
        for r in ENVOYS:
            wait_until(lambda r=r: self.served_by(r, host) == by, 20, f"{r}: {host} by {by}")


@contextlib.contextmanager
def rig(tmp_path: Path) -> Iterator[Rig]:
    ports = {r: free_port() for r in ENVOYS}
    options = CompileOptions(
        listener_address="127.0.0.1", listener_ports=ports, vhds_cluster=XDS_CLUSTER
    )
    status = RecordingStatus()
    with (
        backends(*NAMES, NEW) as started,
        contextlib.ExitStack() as stack,
    ):
        first = make_model(started, {"a": "a", "b": "b", "c": "c"})
        runtime, xds, loop = stack.enter_context(runtime_thread(first, options, status=status))
        envoys = {}
        for r, mode in ENVOYS.items():
            (tmp_path / r).mkdir()
            envoys[r] = stack.enter_context(
                envoy(tmp_path / r, xds_port=xds, mode=mode, node_id=f"{r}-1", cluster=r,
                      region=r, zone=f"{r}-1a")
            )  # fmt: skip
        yield Rig(runtime, loop, status, envoys, ports, started)


def test_envoys_on_sotw_and_delta_ads_take_virtual_hosts_one_at_a_time(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        for region in ENVOYS:
            r.wait_synced(region, r.snapshot(region))
        for host in ("a", "b", "c"):
            r.wait_served(f"{host}.test", host)
        for region, mode in ENVOYS.items():
            modes = sorted(p.mode for p in r.streams(region))
            assert modes == sorted(["delta", mode.removeprefix("ads-")])
            vhds = r.vhds_stream(region)
            assert vhds.mode == "delta" and vhds.last_nack is None
            assert r.envoys[region].stat("http.ubiq_http.rds.vhds.ubiq-http.update_rejected") == 0
        rds_before = {g: dict(p.responses_sent) for g in ENVOYS for p in r.streams(g)}

        # one RoutePolicy changes: each VHDS stream sends that one host, RDS sends nothing
        mark = len(r.status.vhds)
        r.publish({"a": "a", "b": "c", "c": "c"})
        r.wait_served("b.test", "c")
        sent = r.status.vhds_since(mark)
        assert sorted(s[1:] for s in sent) == [(("ubiq-http/b",), ())] * 2, sent
        assert {s[0] for s in sent} == {r.vhds_stream(g).stream_id for g in ENVOYS}
        after = {g: dict(p.responses_sent) for g in ENVOYS for p in r.streams(g)}
        routes = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
        assert [v.get(routes) for v in after.values()] == [
            v.get(routes) for v in rds_before.values()
        ]
        assert r.served_by("eu-west", "a.test") == "a"

        # a host added, then removed
        mark = len(r.status.vhds)
        r.publish({"a": "a", "b": "c", "c": "c", "d": "d"})
        r.wait_served("d.test", "d")
        assert sorted(s[1:] for s in r.status.vhds_since(mark)) == [(("ubiq-http/d",), ())] * 2
        mark = len(r.status.vhds)
        r.publish({"a": "a", "b": "c", "c": "c"})
        r.wait_served("d.test", "404")
        assert sorted(s[1:] for s in r.status.vhds_since(mark)) == [((), ("ubiq-http/d",))] * 2
        r.wait_served("a.test", "a")

        # a host Envoy rejects (bad regex) never replaces the good one
        good = {g: r.snapshot(g) for g in ENVOYS}
        for region in ENVOYS:
            build = r.runtime._groups[group_key(region)]
            resources: dict[str, Mapping[str, Message]] = dict(build.compilation.resources)
            hosts = {n: resources[VIRTUAL_HOST][n] for n in resources[VIRTUAL_HOST]}
            bad = rc_pb2.VirtualHost()
            bad.CopyFrom(hosts["ubiq-http/b"])
            bad.routes[0].match.ClearField("prefix")
            bad.routes[0].match.safe_regex.regex = "("
            hosts["ubiq-http/b"] = bad
            resources[VIRTUAL_HOST] = hosts
            r.runtime.cache.set_snapshot(group_key(region), Snapshot.build(resources))

        for region in ENVOYS:
            wait_until(lambda g=region: r.vhds_stream(g).last_nack is not None, 20, "VHDS NACK")
            nack = r.vhds_stream(region).last_nack
            assert nack is not None and nack.type_url == VIRTUAL_HOST
            assert nack.names == ("ubiq-http/b",)
            assert "missing )" in nack.message, nack.message
            assert r.vhds_stream(region).acked[VIRTUAL_HOST] == good[region].type_version(
                VIRTUAL_HOST
            )
            assert r.served_by(region, "b.test") == "c"  # the good host still serves
            assert r.served_by(region, "a.test") == "a"

        # the next good change is taken
        r.publish({"a": "a", "b": "a", "c": "c"})
        r.wait_served("b.test", "a")


def test_a_host_never_reaches_envoy_before_the_cluster_it_routes_to(tmp_path: Path) -> None:
    """One change adds a Service and moves a route to it: the VHDS stream waits until the
    node's ADS stream has given Envoy the new cluster and its endpoints, so no request to the
    moving host fails (without the wait Envoy answers 503, no cluster, for a moment)."""
    with rig(tmp_path) as r:
        for region in ENVOYS:
            r.wait_synced(region, r.snapshot(region))
        r.wait_served("b.test", "b")
        failures: list[str] = []
        served: set[str] = set()
        flowing: set[str] = set()
        stop = threading.Event()

        def hammer(region: str) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{r.ports[region]}", timeout=5) as c:
                for _ in range(20_000):  # bounded; ends when told to
                    if stop.is_set():
                        return
                    reply = c.get("/", headers={"host": "b.test"})
                    served.add(reply.headers.get("x-backend", ""))
                    flowing.add(region)
                    if reply.status_code != 200:
                        failures.append(f"{region}: {reply.status_code} {reply.text[:80]}")

        threads = [threading.Thread(target=hammer, args=(g,)) for g in ENVOYS]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: flowing == set(ENVOYS), 20, "requests flowing through both Envoys")
            r.publish({"a": "a", "b": NEW, "c": "c"}, (*NAMES, NEW))
            r.wait_served("b.test", NEW)  # the event that must come after the move
        finally:
            stop.set()
            for t in threads:
                t.join(20)
        assert served >= {"b", NEW}, served
        assert failures == []
