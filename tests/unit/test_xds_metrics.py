"""xDS metrics: counts by type, proxies by state (0, not absent), push latency and convergence."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from prometheus_client import CollectorRegistry

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.events import Acked, InSync, Nacked, Response
from controlplane.xds.metrics import MeteredStatus, register_metrics
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.snapshot import Snapshot
from tests.support.xds_replay import snapshot

TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def node(name: str) -> base_pb2.Node:
    return base_pb2.Node(id=name, cluster="eu-1")


def ack_all(status: MeteredStatus, stream_id: int, snap: Snapshot) -> None:
    for type_url in TYPES:
        version = snap.type_version(type_url)
        status.record(stream_id, Acked(type_url, version, "n", ()))


def rig() -> tuple[SnapshotCache, MeteredStatus, CollectorRegistry, Clock]:
    cache, registry, clock = SnapshotCache(), CollectorRegistry(), Clock()
    status = MeteredStatus(cache, registry, monotonic=clock)
    register_metrics(status, cache, registry, status.timing)
    return cache, status, registry, clock


def test_counts_by_type_and_connected_proxies_read_zero_after_disconnect() -> None:
    cache, status, registry, _ = rig()
    cache.set_snapshot("eu-1/proxy", snapshot())
    get = registry.get_sample_value
    assert get("ubiq_xds_connected_proxies", {"group": "eu-1/proxy"}) == 0
    assert get("ubiq_xds_nacks_total", {"type": "rds"}) == 0  # exported before the first NACK
    status.connect(1, node("envoy-1"), "eu-1/proxy", "sotw")
    status.sent(1, Response(CLUSTER, "1", "v1", ()))
    status.record(1, Nacked(ROUTE, "r2", "2", ("main",), "bad", 3))
    assert get("ubiq_xds_connected_proxies", {"group": "eu-1/proxy"}) == 1
    assert get("ubiq_xds_pushes_total", {"type": "cds"}) == 1
    assert get("ubiq_xds_nacks_total", {"type": "rds"}) == 1
    assert get("ubiq_xds_proxies", {"group": "eu-1/proxy", "state": "nacked"}) == 1
    assert get("ubiq_xds_proxies", {"group": "eu-1/proxy", "state": "synced"}) == 0
    status.disconnect(1)
    assert get("ubiq_xds_connected_proxies", {"group": "eu-1/proxy"}) == 0
    assert get("ubiq_xds_proxies", {"group": "eu-1/proxy", "state": "nacked"}) == 0


def test_push_latency_and_convergence_from_publication_to_the_last_ack() -> None:
    cache, status, registry, clock = rig()
    get = registry.get_sample_value
    first = snapshot()
    cache.set_snapshot("g", first)
    status.connect(1, node("a"), "g", "sotw")
    status.connect(2, node("b"), "g", "delta")
    ack_all(status, 1, first)
    ack_all(status, 2, first)
    assert get("ubiq_xds_proxies", {"group": "g", "state": "synced"}) == 2

    handed_in = clock.now
    clock.now += 0.5  # compile
    second = snapshot(tag="v2")
    cache.set_snapshot("g", second)
    status.timing.published(handed_in, ["g"])
    clock.now += 0.25
    ack_all(status, 1, second)
    assert get("ubiq_xds_convergence_duration_seconds_count", {}) == 0  # b does not hold it yet
    assert get("ubiq_xds_convergence_pending_seconds", {}) == 0.75
    assert get("ubiq_xds_proxies", {"group": "g", "state": "stale"}) == 1
    clock.now += 1.0
    ack_all(status, 2, second)
    assert get("ubiq_xds_convergence_duration_seconds_count", {}) == 1
    assert get("ubiq_xds_convergence_duration_seconds_sum", {}) == 1.75
    assert get("ubiq_xds_convergence_pending_seconds", {}) == 0
    # push latency: from publication (not from the model's arrival) to each proxy's ACK of a
    # type whose version changed (only routes differ between the two snapshots)
    sums = get("ubiq_xds_push_duration_seconds_sum", {"type": "rds"})
    counts = get("ubiq_xds_push_duration_seconds_count", {"type": "rds"})
    assert (counts, sums) == (4, 0.25 + 1.25)  # the first pushes took 0 s on the fake clock
    assert get("ubiq_xds_push_duration_seconds_count", {"type": "cds"}) == 2


def test_a_proxy_that_already_holds_the_content_or_leaves_does_not_block_convergence() -> None:
    cache, status, registry, clock = rig()
    get = registry.get_sample_value
    current = snapshot()
    cache.set_snapshot("g", current)
    cache.set_snapshot("other", snapshot(tag="o"))
    status.connect(1, node("a"), "g", "sotw")
    status.connect(2, node("b"), "other", "sotw")
    ack_all(status, 1, current)
    # "g" was republished with the same content: a holds it already, nothing to wait for
    status.timing.published(clock.now, ["g"])
    assert get("ubiq_xds_convergence_pending_seconds", {}) == 0
    # "other" changed, its only proxy disconnects before ACKing: converged, by nobody
    cache.set_snapshot("other", snapshot(tag="o2"))
    status.timing.published(clock.now, ["other"])
    clock.now += 2
    assert get("ubiq_xds_convergence_pending_seconds", {}) == 2
    status.disconnect(2)
    assert get("ubiq_xds_convergence_pending_seconds", {}) == 0
    assert get("ubiq_xds_convergence_duration_seconds_count", {}) == 1


def test_in_sync_counts_as_holding_the_version() -> None:
    cache, status, registry, clock = rig()
    first = snapshot()
    cache.set_snapshot("g", first)
    status.connect(1, node("a"), "g", "sotw")
    ack_all(status, 1, first)
    second = snapshot(tag="v2")
    cache.set_snapshot("g", second)
    status.timing.published(clock.now, ["g"])
    for type_url in TYPES:
        status.record(1, InSync(type_url, second.type_version(type_url)))
    assert registry.get_sample_value("ubiq_xds_convergence_duration_seconds_count", {}) == 1
