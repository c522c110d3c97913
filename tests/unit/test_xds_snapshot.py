"""Snapshot building: serialize once, content versions, consistency checks, wire encoding."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from controlplane.errors import InconsistentSnapshotError
from controlplane.xds.events import Response
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ORDER, ROUTE
from controlplane.xds.snapshot import Snapshot
from tests.support.xds_resources import make_cla, make_cluster, make_resources


def resources() -> dict[str, dict[str, object]]:
    return make_resources(8080, {"a": [9001], "b": [9002]}, "a", "v1")  # type: ignore[return-value]


def test_push_order() -> None:
    assert ORDER == (CLUSTER, ENDPOINT, LISTENER, ROUTE)
    assert LISTENER == "type.googleapis.com/envoy.config.listener.v3.Listener"


def test_same_inputs_same_versions_on_every_replica() -> None:
    one, two = Snapshot.build(resources()), Snapshot.build(resources())  # type: ignore[arg-type]
    assert one.version == two.version
    assert {t: one.type_version(t) for t in ORDER} == {t: two.type_version(t) for t in ORDER}


def test_versions_follow_content_per_resource_and_per_type() -> None:
    base = Snapshot.build(resources())  # type: ignore[arg-type]
    changed = make_resources(8080, {"a": [9001], "b": [9003]}, "a", "v1")
    other = Snapshot.build(changed)
    assert other.type_version(CLUSTER) == base.type_version(CLUSTER)
    assert other.type_version(ENDPOINT) != base.type_version(ENDPOINT)
    assert other.get(ENDPOINT).entries["a"] == base.get(ENDPOINT).entries["a"]
    assert other.get(ENDPOINT).entries["b"].version != base.get(ENDPOINT).entries["b"].version


def test_resources_are_serialized_once_into_any() -> None:
    snap = Snapshot.build(resources())  # type: ignore[arg-type]
    entry = snap.get(CLUSTER).entries["a"]
    packed = any_pb2.Any.FromString(entry.any_bytes)
    assert packed.type_url == CLUSTER
    assert packed.value == make_cluster("a").SerializeToString(deterministic=True)


def test_snapshot_is_read_only() -> None:
    snap = Snapshot.build(resources())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        snap.types[CLUSTER] = snap.get(CLUSTER)  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.get(CLUSTER).entries["x"] = snap.get(CLUSTER).entries["a"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        snap.version = "x"  # type: ignore[misc]


def test_encoded_responses_are_what_protobuf_would_build() -> None:
    snap = Snapshot.build(resources())  # type: ignore[arg-type]
    entries = tuple(snap.get(CLUSTER).entries.values())
    sotw = Response(CLUSTER, "7", "v9", entries)
    expected = discovery_pb2.DiscoveryResponse(version_info="v9", type_url=CLUSTER, nonce="7")
    for name in ("a", "b"):
        expected.resources.add().Pack(make_cluster(name))
    assert discovery_pb2.DiscoveryResponse.FromString(sotw.encode()) == expected
    delta = Response(CLUSTER, "8", "sys", entries[:1], ("gone",), delta=True)
    decoded = discovery_pb2.DeltaDiscoveryResponse.FromString(delta.encode())
    assert decoded.system_version_info == "sys" and decoded.nonce == "8"
    assert list(decoded.removed_resources) == ["gone"]
    (resource,) = decoded.resources
    assert (resource.name, resource.version) == ("a", entries[0].version)
    cluster = cluster_pb2.Cluster()
    resource.resource.Unpack(cluster)
    assert cluster == make_cluster("a")


def test_consistent_snapshot_passes() -> None:
    Snapshot.build(resources()).check_consistent()  # type: ignore[arg-type]


def test_missing_endpoints_are_inconsistent() -> None:
    broken = resources()
    del broken[ENDPOINT]["b"]
    with pytest.raises(InconsistentSnapshotError, match="'b'"):
        Snapshot.build(broken).check_consistent()  # type: ignore[arg-type]


def test_orphan_endpoints_are_inconsistent() -> None:
    broken = resources()
    broken[ENDPOINT]["orphan"] = make_cla("orphan", [1])
    with pytest.raises(InconsistentSnapshotError, match="orphan"):
        Snapshot.build(broken).check_consistent()  # type: ignore[arg-type]


def test_missing_route_configuration_is_inconsistent() -> None:
    broken = resources()
    del broken[ROUTE]["main"]
    with pytest.raises(InconsistentSnapshotError, match="RouteConfiguration 'main'"):
        Snapshot.build(broken).check_consistent()  # type: ignore[arg-type]


def test_eds_service_name_is_the_reference() -> None:
    res = resources()
    cluster = make_cluster("a")
    cluster.eds_cluster_config.service_name = "a-endpoints"
    res[CLUSTER]["a"] = cluster
    res[ENDPOINT]["a-endpoints"] = res[ENDPOINT].pop("a")
    snap = Snapshot.build(res)  # type: ignore[arg-type]
    snap.check_consistent()
    assert snap.references.eds_by_cluster["a"] == "a-endpoints"


def test_a_round_memo_serializes_shared_messages_once() -> None:
    from controlplane.xds.snapshot import EntryMemo

    shared = resources()
    other = {t: dict(by_name) for t, by_name in shared.items()}  # same message objects
    memo = EntryMemo()
    first = Snapshot.build(shared, memo=memo)
    second = Snapshot.build(other, memo=memo)
    alone = Snapshot.build(other)
    assert second == alone  # same versions and bytes as without the memo
    for type_url in first.types:
        for name, entry in first.get(type_url).entries.items():
            assert second.get(type_url).entries[name] is entry  # made once, shared
    changed = {**other, CLUSTER: {**other[CLUSTER]}}
    name = next(iter(changed[CLUSTER]))
    edited = make_cluster(name)
    edited.connect_timeout.seconds = 7
    changed[CLUSTER][name] = edited
    third = Snapshot.build(changed, memo=memo)
    assert third.get(CLUSTER).entries[name] is not first.get(CLUSTER).entries[name]
