"""Replaying Delta (incremental) ADS sequences against the pure stream state machine."""

from __future__ import annotations

from controlplane.xds.events import Acked, Nacked, StaleIgnored
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.stream import XdsStream
from tests.support.xds_replay import decode_delta, delta, only, snapshot


def connected(snap: Snapshot | None = None) -> tuple[XdsStream, Snapshot]:
    snap = snap if snap is not None else snapshot()
    stream = XdsStream(delta=True)
    stream.on_snapshot(snap)
    cds = only(stream.on_request(delta(CLUSTER)))
    assert stream.on_request(delta(LISTENER)).responses == ()
    assert stream.on_request(delta(CLUSTER, nonce=cds.nonce)).responses == ()  # awaits EDS
    eds = only(stream.on_request(delta(ENDPOINT, ["a", "b"])))
    lds = only(stream.on_request(delta(ENDPOINT, nonce=eds.nonce)))
    assert stream.on_request(delta(LISTENER, nonce=lds.nonce)).responses == ()
    rds = only(stream.on_request(delta(ROUTE, ["main"])))
    assert stream.on_request(delta(ROUTE, nonce=rds.nonce)).responses == ()
    return stream, snap


def test_first_response_has_resources_with_versions_and_system_version() -> None:
    snap = snapshot()
    stream = XdsStream(delta=True)
    stream.on_snapshot(snap)
    cds = only(stream.on_request(delta(CLUSTER)))
    message = decode_delta(cds)
    assert message.system_version_info == snap.type_version(CLUSTER)
    assert [(r.name, r.version) for r in message.resources] == [
        (name, e.version) for name, e in snap.get(CLUSTER).entries.items()
    ]
    assert message.resources[0].resource.type_url == CLUSTER
    assert list(message.removed_resources) == []


def test_only_changed_resources_are_sent() -> None:
    stream, _ = connected()
    eds = only(stream.on_snapshot(snapshot({"a": [9001], "b": [9999]})))
    assert eds.names == ("b",)


def test_reconnect_with_initial_versions_sends_only_what_differs() -> None:
    old, new = snapshot(), snapshot({"a": [9001], "b": [9999], "c": [9003]})
    held = {n: e.version for n, e in old.get(ENDPOINT).entries.items()}
    stream = XdsStream(delta=True)
    stream.on_snapshot(new)
    eds = only(stream.on_request(delta(ENDPOINT, ["a", "b", "c"], initial=held)))
    assert eds.names == ("b", "c")
    stream2 = XdsStream(delta=True)
    stream2.on_snapshot(new)
    held = {n: e.version for n, e in new.get(ENDPOINT).entries.items()}
    assert stream2.on_request(delta(ENDPOINT, ["a", "b", "c"], initial=held)).responses == ()


def test_reconnect_learns_of_removed_resources() -> None:
    old = snapshot({"a": [9001], "b": [9002], "gone": [9003]})
    held = {n: e.version for n, e in old.get(CLUSTER).entries.items()}
    stream = XdsStream(delta=True)
    stream.on_snapshot(snapshot())
    cds = only(stream.on_request(delta(CLUSTER, initial=held)))
    assert cds.names == () and cds.removed == ("gone",)
    assert list(decode_delta(cds).removed_resources) == ["gone"]


def test_unsubscribe_and_resubscribe_resends() -> None:
    stream, _ = connected()
    assert stream.on_request(delta(ENDPOINT, unsubscribe=["b"])).responses == ()
    eds = only(stream.on_request(delta(ENDPOINT, ["b"])))
    assert eds.names == ("b",)


def test_subscription_changes_apply_even_with_a_stale_nonce() -> None:
    stream, _ = connected()
    step = stream.on_request(delta(ENDPOINT, unsubscribe=["a"], nonce="old"))
    assert step.events == (StaleIgnored(ENDPOINT, "old"),)
    assert only(stream.on_request(delta(ENDPOINT, ["a"]))).names == ("a",)


def test_removal_comes_after_the_route_moved() -> None:
    stream, _ = connected()
    new = snapshot({"b": [9002], "c": [9003]}, route_to="c", tag="v2")
    cds = only(stream.on_snapshot(new))
    assert (cds.names, cds.removed) == (("c",), ())  # "a" stays while routes point at it
    eds = only(stream.on_request(delta(ENDPOINT, ["c"])))  # c warms; the CDS ACK waits
    assert (eds.names, eds.removed) == (("c",), ())
    assert stream.on_request(delta(ENDPOINT, nonce=eds.nonce)).responses == ()
    rds = only(stream.on_request(delta(CLUSTER, nonce=cds.nonce)))
    assert rds.type_url == ROUTE
    step = stream.on_request(delta(ROUTE, nonce=rds.nonce))  # the route has moved: now remove
    assert [(r.type_url, r.names, r.removed) for r in step.responses] == [
        (CLUSTER, (), ("a",)),
        (ENDPOINT, (), ("a",)),
    ]
    cds2, eds2 = step.responses
    assert isinstance(stream.on_request(delta(CLUSTER, nonce=cds2.nonce)).events[0], Acked)
    assert isinstance(stream.on_request(delta(ENDPOINT, nonce=eds2.nonce)).events[0], Acked)
    assert stream.acked_version(CLUSTER) == new.type_version(CLUSTER)
    assert stream.acked_version(ENDPOINT) == new.type_version(ENDPOINT)


def test_nack_is_not_resent_and_next_change_is() -> None:
    stream, _ = connected()
    rds = only(stream.on_snapshot(snapshot(tag="bad")))
    step = stream.on_request(delta(ROUTE, nonce=rds.nonce, error="missing ): ("))
    (event,) = step.events
    assert isinstance(event, Nacked) and event.message == "missing ): ("
    assert step.responses == ()
    assert stream.on_request(delta(ROUTE)).responses == ()  # a plain request changes nothing
    fixed = only(stream.on_snapshot(snapshot(tag="v3")))
    assert fixed.names == ("main",)


def test_changed_cluster_resends_its_endpoints() -> None:
    stream, _ = connected()
    from tests.support.xds_resources import make_resources

    resources = make_resources(8080, {"a": [9001], "b": [9002]}, "a", "v1")
    resources[CLUSTER]["a"].connect_timeout.seconds = 7  # type: ignore[attr-defined]
    cds = only(stream.on_snapshot(Snapshot.build(resources)))
    assert cds.names == ("a",)
    eds = only(stream.on_request(delta(CLUSTER, nonce=cds.nonce)))
    assert eds.names == ("a",)


def test_wildcard_star_and_its_removal() -> None:
    stream = XdsStream(delta=True)
    stream.on_snapshot(snapshot())
    eds = only(stream.on_request(delta(ENDPOINT, ["*"])))
    assert eds.names == ("a", "b")
    stream.on_request(delta(ENDPOINT, nonce=eds.nonce))
    assert stream.on_request(delta(ENDPOINT, unsubscribe=["*"])).responses == ()
    step = stream.on_snapshot(snapshot({"a": [9001], "b": [9999]}))
    assert step.responses == ()  # no longer subscribed to anything


def test_delta_per_type_stream() -> None:
    stream = XdsStream(delta=True, type_url=ROUTE)
    stream.on_snapshot(snapshot())
    assert only(stream.on_request(delta("", ["main"]))).type_url == ROUTE


def test_reconnect_with_a_nonce_from_the_previous_connection_gets_config() -> None:
    snap = snapshot()
    stream = XdsStream(delta=True)
    stream.on_snapshot(snap)
    step = stream.on_request(delta(CLUSTER, nonce="41"))
    assert not any(isinstance(e, StaleIgnored) for e in step.events)
    cds = only(step)
    assert [r.name for r in decode_delta(cds).resources] == list(snap.get(CLUSTER).entries)
    assert isinstance(stream.on_request(delta(CLUSTER, nonce=cds.nonce)).events[0], Acked)


def test_per_type_delta_stream_ignores_other_type_urls() -> None:
    stream = XdsStream(delta=True, type_url=ENDPOINT)
    stream.on_snapshot(snapshot())
    assert stream.on_request(delta(ROUTE, ["main"])).responses == ()
    assert stream.tracked_types() == []
    eds = only(stream.on_request(delta(ENDPOINT, ["a"])))
    assert [r.name for r in decode_delta(eds).resources] == ["a"]


def test_new_endpoints_of_held_clusters_and_the_route_go_together() -> None:
    stream, _ = connected()
    new = snapshot({"a": [9101], "b": [9002]}, route_to="b", tag="v2")
    step = stream.on_snapshot(new)
    assert [(r.type_url, r.names) for r in step.responses] == [
        (ENDPOINT, ("a",)),
        (ROUTE, ("main",)),
    ]
    eds, rds = step.responses
    assert stream.on_request(delta(ROUTE, nonce=rds.nonce)).responses == ()
    assert stream.on_request(delta(ENDPOINT, nonce=eds.nonce)).responses == ()
    assert stream.acked_version(ROUTE) == new.type_version(ROUTE)
