"""API listeners for proxyless gRPC: which hosts get one, and what the listener holds."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from controlplane.xds.compiler import CompileOptions, NodeIdentity, compile_node_resources
from controlplane.xds.compiler.api_listeners import build_api_listeners, grpc_hosts
from controlplane.xds.compiler.listeners import ROUTER_FILTER
from controlplane.xds.compiler.routes import FAULT_FILTER
from controlplane.xds.node import group_key
from controlplane.xds.resources import LISTENER, ROUTE
from controlplane.xds.snapshot import Snapshot
from tests.support.policy import doc, load

GRPC_SERVICES = doc(
    "Service",
    "echo",
    """
    ports: [{name: grpc, port: 9000, protocol: GRPC}, {name: http, port: 8080}]
    endpoints: [{cluster: eu-west, address: 127.0.2.1}]
    """,
) + "---\n" + doc(
    "Service",
    "h2",
    """
    ports: [{port: 8080, protocol: HTTP2}]
    endpoints: [{cluster: eu-west, address: 127.0.2.2}]
    """,
)  # fmt: skip


def route(name: str, hosts: str, rules: str) -> str:
    return doc("RoutePolicy", name, f"hosts: {hosts}\nhttp: {rules}")


def test_only_hosts_routing_to_a_grpc_port_get_an_api_listener() -> None:
    m = load(
        GRPC_SERVICES,
        route("echo", "[echo.example., echo.alt]", "[{route: [{service: echo}]}]"),
        route("echo-http", "[echo-http.example]", "[{route: [{service: echo, port: 8080}]}]"),
        route("echo-grpc", "[grpc.example, '*']", "[{route: [{service: echo, port: 9000}]}]"),
        route("h2", "[h2.example]", "[{route: [{service: h2}]}]"),
        route("web", "[web.example]", "[{route: [{service: web}]}]"),
        route(
            "mixed",
            "[mixed.example]",
            "[{route: [{service: web, weight: 50}, {service: echo, weight: 50}]}]",
        ),
    )
    assert grpc_hosts(m) == ["echo.alt", "echo.example", "grpc.example", "mixed.example"]


def test_api_listener_reads_the_gateway_routes_over_ads_with_the_router_last() -> None:
    m = load(GRPC_SERVICES, route("echo", "[echo.example]", "[{route: [{service: echo}]}]"))
    options = CompileOptions(route_config_name="routes-x")
    (listener,) = build_api_listeners(m, options)
    assert listener.name == "echo.example"
    assert not listener.HasField("address") and not listener.filter_chains
    hcm = hcm_pb2.HttpConnectionManager()
    assert listener.api_listener.api_listener.Unpack(hcm)
    assert hcm.rds.route_config_name == "routes-x"
    assert hcm.rds.config_source.HasField("ads")
    assert [f.name for f in hcm.http_filters] == [FAULT_FILTER, ROUTER_FILTER]  # gRFC A33
    assert hcm.http_filters[-1].typed_config.Is(router_pb2.Router.DESCRIPTOR)


def test_a_proxyless_snapshot_is_consistent() -> None:
    m = load(GRPC_SERVICES, route("echo", "[echo.example]", "[{route: [{service: echo}]}]"))
    options = CompileOptions()
    resources = dict(compile_node_resources(m, NodeIdentity("eu-west", "eu-west"), options))
    resources[LISTENER] = {lst.name: lst for lst in build_api_listeners(m, options)}
    snapshot = Snapshot.build(resources)
    snapshot.check_consistent()  # the API listener's RDS name is in the snapshot
    assert list(resources[ROUTE]) == [options.route_config_name]
    assert isinstance(resources[LISTENER]["echo.example"], listener_pb2.Listener)
    assert group_key("eu-west", "grpc") == "eu-west/grpc"


def test_no_grpc_services_no_api_listeners() -> None:
    m = load(route("web", "[web.example]", "[{route: [{service: web}]}]"))
    assert build_api_listeners(m, CompileOptions()) == []


def test_proxyless_nodes_get_api_listeners_and_follow_edits_incrementally() -> None:
    from controlplane.policy.diff import diff
    from controlplane.xds.compiler.generate import compile_node
    from controlplane.xds.compiler.incremental import recompile_node

    node = NodeIdentity("eu-west", "eu-west", role="grpc")
    envoy = NodeIdentity("eu-west", "eu-west", role="proxy")
    one = route("echo", "[echo.test]", "[{route: [{service: echo}]}]")
    two = route("echo2", "[echo2.test]", "[{route: [{service: echo}]}]")
    before = load(GRPC_SERVICES, one)
    after = load(GRPC_SERVICES, one, two)
    assert before.grpc_services == frozenset({"echo"})

    first = compile_node(before, node)
    assert set(first.resources[LISTENER]) == {"echo.test"}
    assert set(compile_node(before, envoy).resources[LISTENER]) == {"ubiq-http"}
    again = recompile_node(first, after, diff(before, after))
    assert set(again.resources[LISTENER]) == {"echo.test", "echo2.test"}
    full = compile_node(after, node)
    for type_url, by_name in full.resources.items():
        assert {n: m.SerializeToString(deterministic=True) for n, m in by_name.items()} == {
            n: m.SerializeToString(deterministic=True) for n, m in again.resources[type_url].items()
        }
