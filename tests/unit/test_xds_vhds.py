"""VHDS (``CompileOptions.vhds_cluster``): what the compiler, the snapshot and a stream make of it.

The real Envoy side is tests/integration/test_xds_vhds_envoy.py.
"""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import config_source_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import Message

from controlplane.errors import InconsistentSnapshotError
from controlplane.policy.diff import diff
from controlplane.policy.loader import load_texts
from controlplane.policy.model import Model
from controlplane.xds.compiler import CompileOptions, NodeIdentity
from controlplane.xds.compiler.generate import compile_node
from controlplane.xds.compiler.incremental import recompile_node
from controlplane.xds.events import Acked, Nacked
from controlplane.xds.node import PROXYLESS_ROLE, group_key
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, VIRTUAL_HOST
from controlplane.xds.runtime import build_groups
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.stream import XdsStream
from tests.support.policy import GRPC_PORT, cluster, join, route, service

VHDS = CompileOptions(listener_port=10000, vhds_cluster="ubiq_xds")
RDS = CompileOptions(listener_port=10000)
NODE = NodeIdentity("eu-west", "eu-west", "eu-west-1a")


def model(*routes: tuple[str, str, str]) -> Model:
    eps = "[{cluster: eu-west, address: 10.0.0.1}]"
    docs = [cluster("eu-west", "eu-west-1a")]
    docs += [service(s, "[{port: 8080}]", eps) for s in ("a", "b", "c")]
    docs += [service("g", GRPC_PORT, eps), route("g", "g.test", "g")]
    docs += [route(name, host, to) for name, host, to in routes]
    return load_texts([("p.yaml", join(*docs))])


BASE = (("a", "a.test", "a"), ("b", "b.test", "b"), ("c", "c.test", "c"))


def serialized(messages: dict[str, Message]) -> dict[str, bytes]:
    return {n: m.SerializeToString(deterministic=True) for n, m in messages.items()}


def test_off_by_default_and_byte_identical_to_before() -> None:
    assert CompileOptions().vhds_cluster is None
    compiled = compile_node(model(*BASE), NODE, RDS)
    assert list(compiled.resources) == [LISTENER, ROUTE, CLUSTER, ENDPOINT]
    (config,) = compiled.resources[ROUTE].values()
    assert isinstance(config, route_pb2.RouteConfiguration)
    assert not config.HasField("vhds")
    assert [h.name for h in config.virtual_hosts] == ["a", "b", "c", "g"]


def test_route_configuration_names_only_the_vhds_source_and_hosts_are_resources() -> None:
    rds = compile_node(model(*BASE), NODE, RDS).resources
    vhds = compile_node(model(*BASE), NODE, VHDS).resources
    assert list(vhds) == [LISTENER, ROUTE, CLUSTER, ENDPOINT, VIRTUAL_HOST]
    for t in (LISTENER, CLUSTER, ENDPOINT):  # everything else as without VHDS
        assert serialized(dict(vhds[t])) == serialized(dict(rds[t]))
    (config,) = vhds[ROUTE].values()
    assert isinstance(config, route_pb2.RouteConfiguration)
    assert config.name == "ubiq-http" and not config.virtual_hosts
    api = config.vhds.config_source.api_config_source
    assert api.api_type == config_source_pb2.ApiConfigSource.DELTA_GRPC
    assert api.transport_api_version == config_source_pb2.V3
    assert [s.envoy_grpc.cluster_name for s in api.grpc_services] == ["ubiq_xds"]
    assert config.vhds.config_source.resource_api_version == config_source_pb2.V3
    # each host: the RDS host under its VHDS name, byte for byte what protobuf writes
    (whole,) = rds[ROUTE].values()
    assert isinstance(whole, route_pb2.RouteConfiguration)
    hosts = vhds[VIRTUAL_HOST]
    assert list(hosts) == [f"ubiq-http/{h.name}" for h in whole.virtual_hosts]
    for host in whole.virtual_hosts:
        expected = rc_pb2.VirtualHost()
        expected.CopyFrom(host)
        expected.name = f"ubiq-http/{host.name}"
        got = hosts[expected.name]
        assert got == expected
        assert got.SerializeToString(deterministic=True) == expected.SerializeToString(
            deterministic=True
        )
    snapshot = Snapshot.build(vhds)
    snapshot.check_consistent()
    for name, entry in snapshot.get(VIRTUAL_HOST).entries.items():
        assert (
            entry.version
            == Snapshot.build({VIRTUAL_HOST: {name: hosts[name]}})
            .get(VIRTUAL_HOST)
            .entries[name]
            .version
        )


def test_proxyless_groups_keep_whole_route_configurations() -> None:
    groups = build_groups(model(*BASE), VHDS)
    assert VIRTUAL_HOST in groups[group_key("eu-west")].snapshot.types
    grpc = groups[group_key("eu-west", PROXYLESS_ROLE)].compilation.resources
    assert VIRTUAL_HOST not in grpc
    (config,) = grpc[ROUTE].values()
    assert isinstance(config, route_pb2.RouteConfiguration)
    assert not config.HasField("vhds") and len(config.virtual_hosts) == 4


def test_one_route_policy_change_changes_one_virtual_host_and_nothing_else() -> None:
    before, after = model(*BASE), model(("a", "a.test", "a"), ("b", "b.test", "c"), BASE[2])
    old = compile_node(before, NODE, VHDS)
    new = recompile_node(old, after, diff(before, after))
    full = compile_node(after, NODE, VHDS)
    for t in full.resources:  # incremental == full compile
        assert serialized(dict(new.resources[t])) == serialized(dict(full.resources[t]))
    assert new.resources[ROUTE] is old.resources[ROUTE]  # the RouteConfiguration never moves
    first = Snapshot.build(old.resources)
    second = Snapshot.build(new.resources, previous=first, previous_resources=old.resources)
    second.check_consistent(previous=first)
    assert second.types[ROUTE] is first.types[ROUTE]
    was, now = first.get(VIRTUAL_HOST).entries, second.get(VIRTUAL_HOST).entries
    assert [n for n in now if now[n] is not was[n]] == ["ubiq-http/b"]
    # and a recompile with nothing changed hands the same VirtualHost map on
    again = recompile_node(new, after, diff(after, after))
    assert again.resources[VIRTUAL_HOST] is new.resources[VIRTUAL_HOST]


def test_a_virtual_host_of_no_vhds_route_configuration_is_inconsistent() -> None:
    resources = dict(compile_node(model(*BASE), NODE, VHDS).resources)
    resources[ROUTE] = compile_node(model(*BASE), NODE, RDS).resources[ROUTE]
    with pytest.raises(InconsistentSnapshotError, match=r"ubiq-http/a.*no RouteConfiguration"):
        Snapshot.build(resources).check_consistent()


def request(
    subscribe: tuple[str, ...] = (), nonce: str = "", error: str = ""
) -> discovery_pb2.DeltaDiscoveryRequest:
    out = discovery_pb2.DeltaDiscoveryRequest(
        type_url=VIRTUAL_HOST, resource_names_subscribe=subscribe, response_nonce=nonce
    )
    out.node.id = "envoy-1"
    if error:
        out.error_detail.message = error
    return out


def vhds_snapshot(m: Model) -> Snapshot:
    return build_groups(m, VHDS)[group_key("eu-west")].snapshot


def test_stream_sends_every_host_then_only_the_changed_one_and_removals() -> None:
    stream = XdsStream(delta=True, type_url=VIRTUAL_HOST)
    first = vhds_snapshot(model(*BASE))
    stream.on_request(request())  # Envoy's first VHDS request names nothing (wildcard)
    (sent,) = stream.on_snapshot(first).responses
    assert [e.name for e in sent.entries] == [f"ubiq-http/{n}" for n in "abcg"]
    assert isinstance(stream.on_request(request(nonce=sent.nonce)).events[0], Acked)

    changed = vhds_snapshot(model(("a", "a.test", "a"), ("b", "b.test", "c"), BASE[2]))
    (update,) = stream.on_snapshot(changed).responses
    assert [e.name for e in update.entries] == ["ubiq-http/b"] and not update.removed
    stream.on_request(request(nonce=update.nonce))

    fewer = vhds_snapshot(model(("a", "a.test", "a"), ("b", "b.test", "c")))
    (removal,) = stream.on_snapshot(fewer).responses
    assert not removal.entries and removal.removed == ("ubiq-http/c",)
    stream.on_request(request(nonce=removal.nonce))
    assert stream.acked_version(VIRTUAL_HOST) == fewer.type_version(VIRTUAL_HOST)


def test_a_nacked_host_is_not_sent_again_and_the_next_change_is() -> None:
    stream = XdsStream(delta=True, type_url=VIRTUAL_HOST)
    stream.on_request(request())
    (sent,) = stream.on_snapshot(vhds_snapshot(model(*BASE))).responses
    stream.on_request(request(nonce=sent.nonce))
    bad = vhds_snapshot(model(("a", "a.test", "a"), ("b", "b.test", "c"), BASE[2]))
    (update,) = stream.on_snapshot(bad).responses
    step = stream.on_request(request(nonce=update.nonce, error="rejected"))
    assert isinstance(step.events[0], Nacked) and not step.responses
    assert stream.on_snapshot(bad).responses == ()  # the same content is never resent
    fixed = vhds_snapshot(model(("a", "a.test", "a"), ("b", "b.test", "a"), BASE[2]))
    (again,) = stream.on_snapshot(fixed).responses
    assert [e.name for e in again.entries] == ["ubiq-http/b"]


def test_a_namespace_subscription_selects_its_hosts_and_sotw_gets_nothing() -> None:
    snapshot = vhds_snapshot(model(*BASE))
    stream = XdsStream(delta=True, type_url=VIRTUAL_HOST)
    stream.on_request(request(("ubiq-http",)))
    (sent,) = stream.on_snapshot(snapshot).responses
    assert len(sent.entries) == 4
    other = XdsStream(delta=True, type_url=VIRTUAL_HOST)
    other.on_request(request(("elsewhere",)))
    (empty,) = other.on_snapshot(snapshot).responses
    assert empty.entries == ()
    sotw = XdsStream(delta=False)
    ask = discovery_pb2.DiscoveryRequest(type_url=VIRTUAL_HOST)
    ask.node.id = "envoy-1"
    assert sotw.on_request(ask).responses == ()
    assert sotw.on_snapshot(snapshot).responses == ()


def ads_request(
    type_url: str, names: tuple[str, ...] = (), nonce: str = ""
) -> discovery_pb2.DeltaDiscoveryRequest:
    out = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url, resource_names_subscribe=names, response_nonce=nonce
    )
    out.node.id = "envoy-1"
    return out


def test_holds_once_the_ads_stream_has_every_cluster_and_endpoint_of_the_snapshot() -> None:
    """What a VHDS stream waits for on the node's ADS stream (server ``_Stream.gated``)."""
    snapshot = vhds_snapshot(model(*BASE))
    ads = XdsStream(delta=True)
    assert not ads.holds(snapshot)  # no snapshot yet
    ads.on_request(ads_request(CLUSTER))
    (cds,) = ads.on_snapshot(snapshot).responses
    assert not ads.holds(snapshot)  # CDS in flight
    ads.on_request(ads_request(CLUSTER, nonce=cds.nonce))
    assert not ads.holds(snapshot)  # Envoy has not asked for the new clusters' endpoints yet
    names = tuple(snapshot.get(ENDPOINT).entries)
    (eds,) = ads.on_request(ads_request(ENDPOINT, names)).responses
    assert not ads.holds(snapshot)  # EDS in flight
    ads.on_request(ads_request(ENDPOINT, nonce=eds.nonce))
    assert ads.holds(snapshot)
    other = vhds_snapshot(model(("a", "a.test", "b"), BASE[1], BASE[2]))
    assert not ads.holds(other)  # a snapshot the stream has not taken yet


def test_incremental_vhds_equals_a_full_compile_through_adds_and_removals() -> None:
    steps = [
        BASE,
        (*BASE, ("d", "d.test", "a")),  # a host added (sorted among the others)
        (("a", "a.test", "b"), BASE[1], ("d", "d.test", "a")),  # one changed, one removed
        (("0first", "first.test", "c"), ("a", "a.test", "b")),  # added first, one removed
        BASE,
    ]
    compiled = compile_node(model(*steps[0]), NODE, VHDS)
    snapshot = Snapshot.build(compiled.resources)
    for routes in steps[1:]:
        new_model = model(*routes)
        new = recompile_node(compiled, new_model, diff(compiled.model, new_model))
        full = compile_node(new_model, NODE, VHDS)
        assert list(new.resources[VIRTUAL_HOST]) == list(full.resources[VIRTUAL_HOST])
        for t in full.resources:
            assert serialized(dict(new.resources[t])) == serialized(dict(full.resources[t]))
        built = Snapshot.build(
            new.resources, previous=snapshot, previous_resources=compiled.resources
        )
        built.check_consistent(previous=snapshot)
        assert built.version == Snapshot.build(full.resources).version
        compiled, snapshot = new, built
