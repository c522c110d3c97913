"""XdsRuntime without a server: models coalesce (newest wins), groups that leave the model are
emptied, and a rejected model keeps every group's snapshot."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import any_pb2
from prometheus_client import CollectorRegistry

from controlplane.errors import InconsistentSnapshotError
from controlplane.placement.static import PlacedCluster
from controlplane.policy.loader import load_texts
from controlplane.policy.model import Model
from controlplane.xds import runtime as runtime_module
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.compiler import CompileOptions
from controlplane.xds.node import DEFAULT_ROLE, group_key
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.runtime import XdsRuntime, build_groups
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import StatusRegistry
from tests.support.policy import cluster, join, route, service
from tests.support.poll import until


def model(
    clusters: tuple[str, ...] = ("eu-west",), port: int = 8080, protocol: str = "HTTP"
) -> Model:
    echo = service(
        "echo",
        f"[{{name: web, port: 9000, protocol: {protocol}}}]",
        f"[{{cluster: eu-west, address: 127.0.0.1, port: {port}}}]",
    )
    docs = [cluster(name, f"{name}-a") for name in clusters]
    return load_texts([("policy.yaml", join(*docs, echo, route("echo", "echo.test", "echo")))])


def new_runtime(registry: CollectorRegistry | None = None) -> XdsRuntime:
    """A runtime with its cache and status registry, and no server."""
    return XdsRuntime(
        SnapshotCache(), StatusRegistry(), options=CompileOptions(), registry=registry
    )


def samples(registry: CollectorRegistry, result: str) -> float:
    return registry.get_sample_value("ubiq_xds_compiles_total", {"result": result}) or 0.0


def is_empty(runtime: XdsRuntime, group: str) -> bool:
    snap = runtime.cache.get(group)
    assert snap is not None
    return all(not snap.get(t).entries for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE))


async def test_models_queued_during_a_compile_coalesce_to_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = new_runtime()
    real = runtime_module.build_groups
    compiled: list[Model] = []
    release = threading.Event()

    def build(m: Model, *args: Any) -> Any:
        compiled.append(m)
        assert release.wait(10)
        return real(m, *args)

    first, second, newest = model(port=1), model(port=2), model(port=3)
    expected = build_groups(newest, CompileOptions())[group_key("eu-west")].snapshot
    monkeypatch.setattr(runtime_module, "build_groups", build)
    running = asyncio.create_task(runtime.update_model(first))
    await until(lambda: compiled, 10, "the first compile started")
    waiting = [asyncio.create_task(runtime.update_model(m)) for m in (second, newest)]
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.wait_for(waiting[0], 10)  # returns once a model at least as new is published
    assert compiled == [first, newest]
    published = runtime.cache.get(group_key("eu-west"))
    assert published is not None
    assert published.version == expected.version
    await asyncio.wait_for(asyncio.gather(running, waiting[1]), 10)
    assert compiled == [first, newest]


async def test_groups_that_leave_the_model_are_emptied() -> None:
    runtime = new_runtime()
    await runtime.update_model(model(("eu-west", "us-east"), protocol="GRPC"))
    groups = [group_key(c, r) for c in ("eu-west", "us-east") for r in ("grpc", "proxy")]
    assert runtime.cache.groups() == groups
    assert not any(is_empty(runtime, g) for g in groups)
    await runtime.update_model(model(("eu-west",), protocol="HTTP"))
    assert runtime.cache.groups() == groups  # still known: connected proxies get the empty one
    assert [g for g in groups if is_empty(runtime, g)] == groups[:1] + groups[2:]
    emptied = runtime.cache.get(group_key("us-east"))
    await runtime.update_model(model(("eu-west",), port=9))
    assert runtime.cache.get(group_key("us-east")) is emptied  # not published again


async def test_a_rejected_model_keeps_every_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = CollectorRegistry()
    runtime = new_runtime(registry)
    await runtime.update_model(model(("eu-west", "us-east")))
    before = {g: runtime.cache.get(g) for g in runtime.cache.groups()}

    def broken(*_: Any) -> Any:
        raise RuntimeError("compiler bug")

    monkeypatch.setattr(runtime_module, "build_groups", broken)
    await runtime.update_model(model(("eu-west",), port=9))
    assert {g: runtime.cache.get(g) for g in runtime.cache.groups()} == before
    assert samples(registry, "rejected") == 1 and samples(registry, "ok") == 1


async def test_compile_cache_forgets_what_left_the_model() -> None:
    runtime = new_runtime()
    await runtime.update_model(model(("eu-west", "us-east")))
    cache = runtime._compile_cache
    assert {key[1] for key in cache.services._entries} == {"eu-west", "us-east"}
    await runtime.update_model(model(("eu-west",)))
    assert set(cache.services._entries) == {("echo", "eu-west", "eu-west-a")}
    assert set(cache.virtual_hosts._entries) == {("echo", 10000)}


async def test_each_snapshot_is_checked_once_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = Snapshot.check_consistent
    threads: list[int] = []

    def check(snapshot: Snapshot, previous: Snapshot | None = None) -> None:
        threads.append(threading.get_ident())
        real(snapshot, previous)

    monkeypatch.setattr(Snapshot, "check_consistent", check)
    runtime = new_runtime()
    await runtime.update_model(model(("eu-west", "us-east")))
    assert len(threads) == len(runtime.cache.groups()) == 2
    assert threading.get_ident() not in threads


async def test_an_inconsistent_build_is_rejected_in_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = CollectorRegistry()
    runtime = new_runtime(registry)
    await runtime.update_model(model())
    before = runtime.cache.get(group_key("eu-west"))

    def inconsistent(snapshot: Snapshot) -> None:
        raise InconsistentSnapshotError("made up")

    monkeypatch.setattr(Snapshot, "check_consistent", inconsistent)
    await runtime.update_model(model(port=9))
    assert runtime.cache.get(group_key("eu-west")) is before
    assert samples(registry, "rejected") == 1


def published_weights(runtime: XdsRuntime, name: str = "echo") -> list[tuple[str, int, int]]:
    snap = runtime.cache.get(group_key("eu-west"))
    assert snap is not None
    packed = any_pb2.Any.FromString(snap.get(ENDPOINT).entries[name].any_bytes)
    cla = endpoint_pb2.ClusterLoadAssignment()
    assert packed.Unpack(cla)
    return [(e.locality.sub_zone, e.priority, e.load_balancing_weight.value) for e in cla.endpoints]


async def test_decisions_are_compiled_with_the_current_and_every_later_model() -> None:
    runtime = new_runtime()
    early = {"echo": (PlacedCluster("eu-west", "eu-west", 30, 0),)}
    await runtime.update_decisions(early)  # no model yet: kept for the first one
    assert runtime.cache.groups() == []
    await runtime.update_model(model(("eu-west", "us-east")))
    assert published_weights(runtime) == [("eu-west", 0, 30)]
    await runtime.update_decisions({"echo": (PlacedCluster("eu-west", "eu-west", 100, 0),)})
    assert published_weights(runtime) == [("eu-west", 0, 100)]
    await runtime.update_model(model(("eu-west", "us-east"), port=9))  # decisions stay
    assert published_weights(runtime) == [("eu-west", 0, 100)]
    await runtime.update_decisions({})  # back to the static placement (endpoint weight 1)
    assert published_weights(runtime) == [("eu-west", 0, 1)]


async def test_decisions_queued_during_a_compile_coalesce_to_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = new_runtime()
    real = runtime_module.build_groups
    compiled: list[object] = []
    release = threading.Event()

    def build(m: Model, *args: Any) -> Any:
        compiled.append(args[3])
        assert release.wait(10)
        return real(m, *args)

    monkeypatch.setattr(runtime_module, "build_groups", build)
    running = asyncio.create_task(runtime.update_model(model()))
    await until(lambda: compiled, 10, "the first compile started")
    older = {"echo": (PlacedCluster("eu-west", "eu-west", 10, 0),)}
    newest = {"echo": (PlacedCluster("eu-west", "eu-west", 20, 0),)}
    waiting = [asyncio.create_task(runtime.update_decisions(d)) for d in (older, newest)]
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.wait_for(asyncio.gather(running, *waiting), 10)
    assert compiled == [{}, newest]
    assert published_weights(runtime) == [("eu-west", 0, 20)]


def test_a_new_group_is_served_as_soon_as_it_is_built() -> None:
    """Cold start: the first group is in the cache while the last is still to be compiled."""
    runtime = new_runtime()
    first, last = group_key("ap-south", DEFAULT_ROLE), group_key("us-east", DEFAULT_ROLE)
    seen: list[tuple[str, bool, bool]] = []

    def on_first(snapshot: Snapshot) -> None:  # runs in the compile thread (no loop here)
        seen.append((first, runtime.cache.get(last) is None, not runtime._groups))

    runtime.cache.watch(first, on_first)
    asyncio.run(runtime.update_model(model(("ap-south", "eu-west", "us-east"))))
    assert seen == [(first, True, True)]
    assert runtime.cache.groups() == sorted(runtime._groups) and len(runtime._groups) == 3


async def test_a_group_with_a_snapshot_waits_for_the_whole_compile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A recompile publishes nothing before every group is built and checked: a group that
    fails keeps every group's snapshot (see the rejected-model tests)."""
    runtime = new_runtime()
    await runtime.update_model(model(("eu-west", "us-east")))
    published: list[str] = []
    keys = sorted(runtime._groups)
    real = runtime_module.build_groups

    def spy(*args: Any, **kwargs: Any) -> Any:
        on_built = args[-1]

        def record(key: str, built: Any) -> None:
            published.append(key)
            before = runtime.cache.get(key)
            on_built(key, built)
            assert runtime.cache.get(key) is before  # not swapped early

        return real(*args[:-1], record)

    monkeypatch.setattr(runtime_module, "build_groups", spy)
    await runtime.update_model(model(("eu-west", "us-east"), port=8081))
    assert published == keys
