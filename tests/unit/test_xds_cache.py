"""SnapshotCache: consistency gate, change-only notification, grouping of nodes."""

from __future__ import annotations

import asyncio
import threading

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from controlplane.errors import InconsistentSnapshotError
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.node import group_by_cluster, group_key
from controlplane.xds.resources import ENDPOINT
from controlplane.xds.snapshot import Snapshot
from tests.support.xds_replay import snapshot
from tests.support.xds_resources import make_resources


def test_set_get_groups_and_change_only_notification() -> None:
    cache = SnapshotCache()
    seen: list[str] = []
    watch = cache.watch("g1", lambda s: seen.append(s.version))
    first = snapshot()
    assert cache.set_snapshot("g1", first) is True
    assert cache.set_snapshot("g1", snapshot()) is False  # same content: nobody is woken
    cache.set_snapshot("g2", snapshot(tag="other"))
    assert seen == [first.version]
    assert cache.get("g1") is first and cache.groups() == ["g1", "g2"]
    watch.cancel()
    cache.set_snapshot("g1", snapshot(tag="v2"))
    assert seen == [first.version] and cache.watcher_count() == 0


def test_inconsistent_snapshot_is_rejected_and_the_previous_stays() -> None:
    cache = SnapshotCache()
    good = snapshot()
    cache.set_snapshot("g", good)
    broken = make_resources(8080, {"a": [1], "b": [2]}, "a")
    del broken[ENDPOINT]["a"]
    with pytest.raises(InconsistentSnapshotError):
        cache.set_snapshot("g", Snapshot.build(broken))
    assert cache.get("g") is good


def test_a_snapshot_already_checked_is_not_checked_again() -> None:
    cache = SnapshotCache()
    broken = make_resources(8080, {"a": [1], "b": [2]}, "a")
    del broken[ENDPOINT]["a"]
    unchecked = Snapshot.build(broken)  # the caller vouches: its check is skipped
    assert cache.set_snapshot("g", unchecked, checked=True) is True
    assert cache.get("g") is unchecked


async def test_watch_from_another_thread_runs_on_the_loop() -> None:
    cache = SnapshotCache()
    loop_thread = threading.get_ident()
    called: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    cache.watch("g", lambda s: called.set_result(threading.get_ident()))
    thread = threading.Thread(target=cache.set_snapshot, args=("g", snapshot()))
    thread.start()
    assert await asyncio.wait_for(called, 5) == loop_thread
    thread.join()


def node(cluster: str = "", metadata: dict[str, str] | None = None) -> base_pb2.Node:
    meta = struct_pb2.Struct()
    meta.update(metadata or {})
    return base_pb2.Node(id="n", cluster=cluster, metadata=meta)


def test_default_grouping_by_ubiq_cluster_and_role() -> None:
    assert group_by_cluster(node("k8s-a")) == group_key("k8s-a") == "k8s-a/proxy"
    meta = {"ubiq.cluster": "eu-1", "ubiq.role": "gateway"}
    assert group_by_cluster(node("ignored", meta)) == "eu-1/gateway"
