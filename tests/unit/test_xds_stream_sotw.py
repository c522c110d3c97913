"""Replaying State-of-the-World ADS sequences against the pure stream state machine."""

from __future__ import annotations

import dataclasses

from controlplane.xds.events import Acked, InSync, Nacked, StaleIgnored
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.stream import XdsStream
from tests.support.xds_replay import ack, decode_sotw, nack, only, snapshot, sotw

ALL_CLAS = ["a", "b"]


def connected(s1: object = None) -> tuple[XdsStream, object]:
    """A stream that subscribed to and ACKed every type of snapshot ``s1``, Envoy-style."""
    snap = s1 if s1 is not None else snapshot()
    stream = XdsStream(delta=False)
    assert stream.on_request(sotw(CLUSTER)).responses == ()  # no snapshot yet: wait
    cds = only(stream.on_snapshot(snap))  # type: ignore[arg-type]
    assert stream.on_request(sotw(LISTENER)).responses == ()  # waits for the CDS ACK
    assert stream.on_request(ack(cds)).responses == ()  # ... and for EDS of the new clusters
    eds = only(stream.on_request(sotw(ENDPOINT, ALL_CLAS)))
    lds = only(stream.on_request(ack(eds, ALL_CLAS)))
    assert stream.on_request(ack(lds)).responses == ()
    rds = only(stream.on_request(sotw(ROUTE, ["main"])))
    step = stream.on_request(ack(rds, ["main"]))
    assert step.responses == ()
    return stream, snap


def test_first_responses_carry_everything_with_content_versions() -> None:
    snap = snapshot()
    stream = XdsStream(delta=False)
    stream.on_request(sotw(CLUSTER))
    cds = only(stream.on_snapshot(snap))
    message = decode_sotw(cds)
    assert message.type_url == CLUSTER
    assert message.version_info == snap.type_version(CLUSTER)
    assert message.nonce == cds.nonce != ""
    assert [r.type_url for r in message.resources] == [CLUSTER, CLUSTER]
    step = stream.on_request(ack(cds))
    assert step.events == (Acked(CLUSTER, snap.type_version(CLUSTER), cds.nonce, ("a", "b")),)
    assert stream.acked_version(CLUSTER) == snap.type_version(CLUSTER)


def test_empty_type_still_gets_a_first_response() -> None:
    stream = XdsStream(delta=False)
    stream.on_snapshot(snapshot())
    eds = only(stream.on_request(sotw(ENDPOINT, ["nonexistent"])))
    assert decode_sotw(eds).resources == []


def test_unchanged_snapshot_pushes_nothing() -> None:
    stream, _ = connected()
    assert stream.on_snapshot(snapshot()).responses == ()  # same content, new object


def test_push_order_cds_eds_then_lds_rds_once_clusters_are_acked() -> None:
    stream, _ = connected()
    new = snapshot(
        {"a": [9101], "b": [9002], "c": [9003]}, route_to="c", tag="v2", listener_port=8081
    )
    step = stream.on_snapshot(new)
    # the changed cluster "a" is followed by its endpoints at once: Envoy keeps a warming, and
    # holds the CDS ACK, until they arrive
    assert [(r.type_url, r.names) for r in step.responses] == [
        (CLUSTER, ("a", "b", "c")),
        (ENDPOINT, ("a", "b")),
    ]
    cds, eds = step.responses
    # Envoy asks for "c" before it has seen the EDS response: stale, ignored; its ACK asks again
    step = stream.on_request(sotw(ENDPOINT, [*ALL_CLAS, "c"], nonce="2"))
    assert step.responses == () and isinstance(step.events[0], StaleIgnored)
    eds = only(stream.on_request(ack(eds, [*ALL_CLAS, "c"])))
    assert (eds.type_url, eds.names) == (ENDPOINT, ("a", "b", "c"))
    assert stream.on_request(ack(eds, [*ALL_CLAS, "c"])).responses == ()  # CDS still unacked
    step = stream.on_request(ack(cds))  # clusters warm: listeners and routes may follow
    assert [r.type_url for r in step.responses] == [LISTENER, ROUTE]
    lds, rds = step.responses
    assert stream.on_request(ack(lds)).responses == ()
    assert stream.on_request(ack(rds, ["main"])).responses == ()
    assert decode_sotw(rds).version_info == new.type_version(ROUTE)


def test_routes_do_not_wait_for_the_listener_ack() -> None:
    stream, _ = connected()
    step = stream.on_snapshot(snapshot(tag="v2", listener_port=8081))
    assert [r.type_url for r in step.responses] == [LISTENER, ROUTE]


def test_only_changed_types_are_pushed() -> None:
    stream, _ = connected()
    rds = only(stream.on_snapshot(snapshot(tag="v2")))
    assert rds.type_url == ROUTE


def test_changed_cluster_is_followed_by_its_endpoints_even_if_unchanged() -> None:
    stream, first = connected()
    new = snapshot(listener_port=8080)
    assert new.version == first.version  # type: ignore[attr-defined]
    # change cluster "a" only (its endpoints stay the same): a different connect_timeout
    from tests.support.xds_resources import make_resources

    resources = make_resources(8080, {"a": [9001], "b": [9002]}, "a", "v1")
    resources[CLUSTER]["a"].connect_timeout.seconds = 5  # type: ignore[attr-defined]
    from controlplane.xds.snapshot import Snapshot

    changed = Snapshot.build(resources)
    assert changed.type_version(ENDPOINT) == new.type_version(ENDPOINT)
    cds = only(stream.on_snapshot(changed))
    assert cds.type_url == CLUSTER
    eds = only(stream.on_request(ack(cds)))
    assert eds.type_url == ENDPOINT and "a" in eds.names


def test_nack_is_recorded_and_the_same_content_never_resent() -> None:
    stream, good = connected()
    bad = snapshot(tag="bad")
    rds = only(stream.on_snapshot(bad))
    step = stream.on_request(
        nack(rds, "missing ): (", ["main"], version=good.type_version(ROUTE))  # type: ignore[attr-defined]
    )
    assert step.responses == ()
    (event,) = [e for e in step.events if isinstance(e, Nacked)]
    assert (event.type_url, event.names, event.message) == (ROUTE, ("main",), "missing ): (")
    assert event.version_info == bad.type_version(ROUTE)
    assert stream.acked_version(ROUTE) == good.type_version(ROUTE)  # type: ignore[attr-defined]
    assert stream.on_snapshot(bad).responses == ()
    other = snapshot({"a": [9001], "b": [9009]}, tag="bad")  # unrelated change: EDS only
    eds = only(stream.on_snapshot(other))
    assert eds.type_url == ENDPOINT
    assert stream.on_request(ack(eds, ALL_CLAS)).responses == ()  # still no RDS resend
    fixed = only(stream.on_snapshot(snapshot({"a": [9001], "b": [9009]}, tag="v3")))
    assert fixed.type_url == ROUTE
    assert isinstance(stream.on_request(ack(fixed, ["main"])).events[0], Acked)


def test_stale_nonce_is_ignored_whole() -> None:
    stream, _ = connected()
    rds = only(stream.on_snapshot(snapshot(tag="v2")))
    step = stream.on_request(sotw(ROUTE, ["main", "other"], nonce="1"))
    assert step == step.__class__((), (StaleIgnored(ROUTE, "1"),))
    assert isinstance(stream.on_request(ack(rds, ["main"])).events[0], Acked)


def test_unsubscribe_then_resubscribe_resends() -> None:
    stream, _ = connected()
    assert stream.on_request(sotw(ENDPOINT, ["a"], nonce="2")).responses == ()
    eds = only(stream.on_request(sotw(ENDPOINT, ALL_CLAS, nonce="2")))
    assert eds.names == ("a", "b")


def test_legacy_wildcard_and_explicit_star() -> None:
    stream = XdsStream(delta=False)
    stream.on_snapshot(snapshot())
    lds = only(stream.on_request(sotw(LISTENER)))
    assert lds.names == ("http",)
    step = stream.on_request(ack(lds))  # empty names again: still wildcard
    assert step.responses == ()
    stream2 = XdsStream(delta=False)
    stream2.on_snapshot(snapshot())
    cds = only(stream2.on_request(sotw(CLUSTER, ["*"])))
    assert cds.names == ("a", "b")
    stream3 = XdsStream(delta=False)
    stream3.on_snapshot(snapshot())
    cds = only(stream3.on_request(sotw(CLUSTER, ["b"])))  # names given: not wildcard
    assert cds.names == ("b",)


def test_removed_cluster_goes_last_make_before_break() -> None:
    stream, _ = connected()
    new = snapshot({"b": [9002]}, route_to="b", tag="v2")
    cds = stream.on_snapshot(new).responses
    # cluster "b" is unchanged, "a" is only being removed: nothing to add, so the route goes first
    assert [r.type_url for r in cds] == [ROUTE]
    rds = cds[0]
    last = only(stream.on_request(ack(rds, ["main"])))
    assert (last.type_url, last.names) == (CLUSTER, ("b",))
    step = stream.on_request(ack(last))
    assert step.responses == ()


def test_removal_waits_while_additions_are_in_flight() -> None:
    stream, _ = connected()
    new = snapshot({"b": [9002], "c": [9003]}, route_to="c", tag="v2")
    cds = only(stream.on_snapshot(new))
    assert cds.names == ("a", "b", "c")  # "a" kept until the route has moved
    assert stream.on_request(ack(cds)).responses == ()  # the route waits for EDS of "c"
    eds = only(stream.on_request(sotw(ENDPOINT, ["a", "b", "c"], nonce="2")))
    assert eds.names == ("b", "c")
    rds = only(stream.on_request(ack(eds, ["a", "b", "c"])))
    assert rds.type_url == ROUTE
    final = only(stream.on_request(ack(rds, ["main"])))
    assert (final.type_url, final.names) == (CLUSTER, ("b", "c"))
    assert final.version_info == new.type_version(CLUSTER)
    stream.on_request(ack(final))
    step = stream.on_request(sotw(ENDPOINT, ["b", "c"], nonce=eds.nonce))
    assert step.responses == ()
    assert stream.acked_version(ENDPOINT) == new.type_version(ENDPOINT)


def test_in_sync_when_the_client_drops_what_changed() -> None:
    stream, _ = connected()
    new = snapshot({"a": [9001], "b": [9999]})  # only b's endpoints change...
    eds = only(stream.on_snapshot(new))
    assert eds.names == ("a", "b")
    stream.on_request(ack(eds, ALL_CLAS))
    assert stream.acked_version(ENDPOINT) == new.type_version(ENDPOINT)
    gone = snapshot({"a": [9001]})  # ...then b goes away; SotW EDS cannot say so
    step = stream.on_snapshot(gone)
    assert [r.type_url for r in step.responses] == [CLUSTER]
    assert InSync(ENDPOINT, gone.type_version(ENDPOINT)) in step.events
    stream.on_request(ack(step.responses[0]))
    assert stream.on_request(sotw(ENDPOINT, ["a"], nonce=eds.nonce)).responses == ()
    assert stream.acked_version(ENDPOINT) == gone.type_version(ENDPOINT)


def test_nack_blames_only_what_changed_so_in_sync_still_follows() -> None:
    stream, _ = connected()
    new = snapshot({"a": [9001], "b": [9999]})  # only b's endpoints change; SotW EDS sends a too
    eds = only(stream.on_snapshot(new))
    assert eds.names == ("a", "b")
    step = stream.on_request(nack(eds, "bad b", ALL_CLAS))
    assert [e.names for e in step.events if isinstance(e, Nacked)] == [("a", "b")]
    state = stream._types[ENDPOINT]
    assert set(state.nacked) == {"b"}  # "a" was held at that very version: not rejected
    gone = snapshot({"a": [9001]})  # b goes away: what the client holds is all that is wanted
    step = stream.on_snapshot(gone)
    assert InSync(ENDPOINT, gone.type_version(ENDPOINT)) in step.events
    assert state.nacked == {}  # pruned to the wanted names


def test_forced_endpoints_are_pruned_to_the_subscribed_names() -> None:
    stream, _ = connected()
    stream.on_request(sotw(ENDPOINT, ["a"], nonce=stream._types[ENDPOINT].last_nonce))
    from tests.support.xds_resources import make_resources

    resources = make_resources(8080, {"a": [9001], "b": [9002]}, "a", "v1")
    resources[CLUSTER]["b"].connect_timeout.seconds = 5  # type: ignore[attr-defined]
    from controlplane.xds.snapshot import Snapshot

    cds = only(stream.on_snapshot(Snapshot.build(resources)))
    assert cds.type_url == CLUSTER
    assert stream.on_request(ack(cds)).responses == ()  # "b" is not subscribed: nothing to force
    assert stream._types[ENDPOINT].forced == set()


def test_types_ubiq_does_not_serve_get_no_answer_and_no_state() -> None:
    stream, _ = connected()
    for i in range(100):
        step = stream.on_request(sotw(f"type.googleapis.com/made.up.Type{i}"))
        assert step.responses == () and step.events == ()
    assert stream.tracked_types() == [CLUSTER, LISTENER, ENDPOINT, ROUTE]


def test_reconnect_with_a_nonce_from_the_previous_connection_gets_config() -> None:
    snap = snapshot()
    stream = XdsStream(delta=False)
    stream.on_snapshot(snap)
    step = stream.on_request(sotw(CLUSTER, nonce="41", version="old"))  # Istio-style reconnect
    assert not any(isinstance(e, StaleIgnored) for e in step.events)
    cds = only(step)
    assert [r.type_url for r in decode_sotw(cds).resources] == [CLUSTER, CLUSTER]
    assert isinstance(stream.on_request(ack(cds)).events[0], Acked)
    eds = only(stream.on_request(sotw(ENDPOINT, ALL_CLAS, nonce="7")))  # also a type never answered
    assert len(decode_sotw(eds).resources) == 2


def test_per_type_stream_ignores_other_type_urls() -> None:
    stream = XdsStream(delta=False, type_url=CLUSTER)
    stream.on_snapshot(snapshot())
    assert stream.on_request(sotw(LISTENER)) == stream.on_request(sotw(ROUTE, ["main"]))
    assert stream.on_request(sotw(LISTENER)).responses == ()
    assert stream.tracked_types() == []
    cds = only(stream.on_request(sotw("")))
    assert cds.type_url == CLUSTER
    assert stream.tracked_types() == [CLUSTER]


def test_streams_sent_a_whole_type_share_its_joined_bytes() -> None:
    """The resources of a whole-type response are joined once per snapshot, not per stream; the
    encoded response is byte-identical to joining the entries."""
    snap = snapshot()
    first, second = XdsStream(delta=False), XdsStream(delta=False)
    first.on_request(sotw(CLUSTER))
    second.on_request(sotw(CLUSTER))
    a, b = only(first.on_snapshot(snap)), only(second.on_snapshot(snap))
    assert a.joined is not None and a.joined is b.joined
    assert a.joined == b"".join(e.sotw_bytes for e in a.entries)
    unjoined = dataclasses.replace(a, joined=None)
    assert a.encode() == unjoined.encode()
    assert [r.type_url for r in decode_sotw(a).resources] == [CLUSTER, CLUSTER]


def test_new_endpoints_of_held_clusters_and_the_route_go_together() -> None:
    """Only endpoints of clusters the Envoy holds changed: the route does not wait for the EDS
    ACK (nothing to warm); each type still has one response in flight."""
    stream, _ = connected()
    new = snapshot({"a": [9101], "b": [9002]}, route_to="b", tag="v2")
    step = stream.on_snapshot(new)
    assert [r.type_url for r in step.responses] == [ENDPOINT, ROUTE]
    eds, rds = step.responses
    assert eds.names == ("a", "b")
    assert stream.on_request(ack(rds, ["main"])).responses == ()
    assert stream.on_request(ack(eds, ALL_CLAS)).responses == ()
    assert stream.acked_version(ENDPOINT) == new.type_version(ENDPOINT)
    assert stream.acked_version(ROUTE) == new.type_version(ROUTE)


def test_the_route_still_waits_for_endpoints_of_a_cluster_being_added() -> None:
    stream, _ = connected()
    new = snapshot({"a": [9101], "b": [9002], "c": [9003]}, route_to="a", tag="v2")
    step = stream.on_snapshot(new)
    assert [r.type_url for r in step.responses] == [CLUSTER, ENDPOINT]  # no route: "c" not warm
    cds, eds_a = step.responses
    assert eds_a.names == ("a", "b")
    assert stream.on_request(ack(eds_a, ALL_CLAS)).responses == ()  # CDS still in flight
    assert stream.on_request(ack(cds)).responses == ()  # ... then the route waits for EDS of "c"
    eds = only(stream.on_request(sotw(ENDPOINT, ["a", "b", "c"], nonce=eds_a.nonce)))
    assert "c" in eds.names
    rds = only(stream.on_request(ack(eds, ["a", "b", "c"])))  # only once "c" is warm
    assert rds.type_url == ROUTE
