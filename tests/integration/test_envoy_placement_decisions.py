"""Real Envoys follow a placement Decision handed to ``XdsRuntime.update_decisions``: the
Decision's percent split, not the node's own region, decides where each Envoy sends traffic."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from controlplane.placement.static import PlacedCluster
from controlplane.policy.loader import load_texts
from controlplane.xds.compiler import CompileOptions
from controlplane.xds.node import group_key
from controlplane.xds.runtime import XdsRuntime
from tests.support.backends import Backend, backends
from tests.support.envoy import EnvoyProcess, envoy
from tests.support.policy import cluster, join, route, service
from tests.support.poll import wait_until
from tests.support.procs import free_port
from tests.support.xds_rig import runtime_thread, wait_acked

pytestmark = pytest.mark.integration

REGIONS = ("eu-west", "us-west")


def policy(started: Mapping[str, Backend]) -> str:
    endpoints = ", ".join(
        f"{{cluster: {r}, address: 127.0.0.1, port: {started[r].port}}}" for r in REGIONS
    )
    return join(
        *(cluster(r, f"{r}-1a") for r in REGIONS),
        service("geo", "[{port: 8080}]", f"[{endpoints}]"),
        route("geo", "geo.test", "geo"),
    )


def split(eu: int, us: int) -> dict[str, tuple[PlacedCluster, ...]]:
    """As the engine places it: serving regions at priority 0, the others standby at 1."""
    return {
        "geo": tuple(
            PlacedCluster(r, r, w, 0 if w > 0 else 1)
            for r, w in zip(REGIONS, (eu, us), strict=True)
        )
    }


def tally(client: httpx.Client, n: int) -> Counter[str]:
    served: Counter[str] = Counter()
    for _ in range(n):
        reply = client.get("/", headers={"host": "geo.test"})
        assert reply.status_code == 200, reply.text
        served[reply.headers["x-backend"]] += 1
    return served


def within(count: int, n: int, p: float, sigmas: float = 4.5) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def wait_all_acked(runtime: XdsRuntime, envoys: Mapping[str, EnvoyProcess]) -> None:
    for r, proxy in envoys.items():
        snapshot = runtime.cache.get(group_key(r))
        assert snapshot is not None
        wait_acked(runtime.status, proxy.node_id, snapshot)


def served_by(client: httpx.Client) -> str:
    return str(client.get("/", headers={"host": "geo.test"}).headers.get("x-backend", ""))


def test_envoys_in_both_regions_follow_the_decisions_split(tmp_path: Path) -> None:
    ports = {r: free_port() for r in REGIONS}
    options = CompileOptions(listener_address="127.0.0.1", listener_ports=ports)
    with (
        backends(*REGIONS) as started,
        runtime_thread(load_texts([("geo.yaml", policy(started))]), options) as (
            runtime,
            xds,
            loop,
        ),
        contextlib.ExitStack() as stack,
    ):
        envoys: dict[str, EnvoyProcess] = {}
        clients: dict[str, httpx.Client] = {}
        for r in REGIONS:
            (tmp_path / r).mkdir()
            envoys[r] = stack.enter_context(
                envoy(tmp_path / r, xds_port=xds, node_id=f"{r}-1", cluster=r, region=r,
                      zone=f"{r}-1a")
            )  # fmt: skip
            clients[r] = stack.enter_context(
                httpx.Client(base_url=f"http://127.0.0.1:{ports[r]}", timeout=10)
            )

        def hand_in(decisions: dict[str, tuple[PlacedCluster, ...]]) -> None:
            done = asyncio.run_coroutine_threadsafe(runtime.update_decisions(decisions), loop)
            done.result(20)
            wait_all_acked(runtime, envoys)

        # no decision: each Envoy keeps its own region (priority 0)
        wait_all_acked(runtime, envoys)
        for r in REGIONS:
            wait_until(lambda r=r: served_by(clients[r]) == r, 20, f"{r} serves {r}")
            assert tally(clients[r], 20) == Counter({r: 20})

        hand_in(split(90, 10))
        n = 200
        for r, other in zip(REGIONS, reversed(REGIONS), strict=True):
            # ACKed; the first answer from the other region shows the worker uses the decision
            wait_until(lambda r=r, o=other: served_by(clients[r]) == o, 20, f"{r} sends to {other}")
            served = tally(clients[r], n)
            assert sum(served.values()) == n, served
            assert within(served["eu-west"], n, 0.9), served
            assert served["eu-west"] > n // 2 and served["us-west"] > 0, served

        hand_in(split(0, 100))
        for r in REGIONS:
            # under 90/10 eu-west never answers 10 in a row from us-west: this is the new split
            wait_until(
                lambda r=r: tally(clients[r], 10) == Counter({"us-west": 10}),
                20,
                f"{r} sends everything to us-west",
            )
            assert tally(clients[r], 50) == Counter({"us-west": 50})
