"""RouteConfigurations spliced from per-virtual-host bytes are exactly the message built whole."""

from __future__ import annotations

from envoy.config.route.v3 import route_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.policy.diff import diff
from controlplane.policy.loader import load_texts
from controlplane.policy.model import Model
from controlplane.xds.compiler import CompileCache, CompileOptions
from controlplane.xds.compiler.effective import ModelIndex
from controlplane.xds.compiler.generate import NodeCompilation, compile_node
from controlplane.xds.compiler.incremental import recompile_node
from controlplane.xds.compiler.routes import build_route_configuration, build_virtual_host
from controlplane.xds.resources import ROUTE, PreSerialized
from controlplane.xds.runtime import build_groups
from controlplane.xds.snapshot import Entry, Snapshot
from tests.support.policy import doc
from tests.support.xds_expected import CLUSTERS, EU, US

OPTIONS = CompileOptions(listener_port=10000)
WEB = doc(
    "Service",
    "web",
    """ports: [{port: 8080}]
subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
endpoints:
- {cluster: eu-west, address: 10.0.0.1, labels: {version: v1}}
- {cluster: us-west, address: 10.0.1.1, labels: {version: v2}}""",
)
#: rule variants a RoutePolicy may have: maps (typed_per_filter_config), weights, retries ...
RULES = [
    "[{route: [{service: web}]}]",
    "[{match: [{path: {prefix: /v2}}], route: [{service: web, subset: v2}]},"
    " {route: [{service: web, subset: v1, weight: 90}, {service: web, subset: v2, weight: 10}]}]",
    "[{route: [{service: web}], fault: {abort: {httpStatus: 503, percent: 1.5}},"
    ' corsPolicy: {allowOrigins: [{prefix: "https://"}], allowMethods: [GET], maxAge: 24h}}]',
    "[{route: [{service: web, subset: v1}], timeout: 2s,"
    " retries: {attempts: 3, perTryTimeout: 500ms, retryOn: [5xx, reset]},"
    " headers: {request: {set: {x-b: '1', x-a: '2'}}, response: {remove: [server]}}}]",
    "[{match: [{headers: {x-canary: {exact: 'true'}}, queryParams: {beta: {present: true}}}],"
    " route: [{service: web, subset: v2}]}, {route: [{service: web}]}]",
]
NAMES = ["a", "b", "c", "d", "e"]


def model_of(policies: dict[str, int]) -> Model:
    texts = [("clusters.yaml", CLUSTERS), ("web.yaml", WEB)]
    for name, rule in sorted(policies.items()):
        spec = f"hosts: [{name}.mesh.example]\nhttp: {RULES[rule]}"
        texts.append((f"route-{name}.yaml", doc("RoutePolicy", name, spec)))
    return load_texts(texts)


def whole(model: Model, compilation: NodeCompilation) -> route_pb2.RouteConfiguration:
    """The RouteConfiguration built as one message, as the compiler did before splicing."""
    index = ModelIndex(model)
    port = compilation.options.port_for(compilation.node)
    hosts = [
        build_virtual_host(p, port, index.cluster_name, index.hash_key, index.is_grpc)
        for p in model.route_policies.values()
    ]
    return build_route_configuration(compilation.options.route_config_name, hosts)


def check(model: Model, compilation: NodeCompilation, snapshot: Snapshot) -> None:
    expected = whole(model, compilation)
    routes = compilation.resources[ROUTE]
    assert isinstance(routes, PreSerialized) and list(routes) == [expected.name]
    data = routes.serialized(expected.name)
    assert data == expected.SerializeToString(deterministic=True)
    parsed = route_pb2.RouteConfiguration.FromString(data)
    assert parsed == expected and routes[expected.name] == expected
    assert snapshot.get(ROUTE).entries[expected.name] == Entry.make(ROUTE, expected.name, expected)


policy_sets = st.dictionaries(
    st.sampled_from(NAMES), st.integers(min_value=0, max_value=len(RULES) - 1), max_size=5
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=policy_sets, steps=st.lists(policy_sets, min_size=1, max_size=5))
def test_spliced_routes_equal_the_whole_message_after_random_changes(
    first: dict[str, int], steps: list[dict[str, int]]
) -> None:
    cache = CompileCache()
    model = model_of(first)
    current = {n: compile_node(model, n, OPTIONS, cache=cache) for n in (EU, US)}
    snaps = {n: Snapshot.build(c.resources) for n, c in current.items()}
    for n, c in current.items():
        check(model, c, snaps[n])
    for policies in steps:
        new = model_of(policies)
        for n, before in current.items():
            after = recompile_node(before, new, diff(before.model, new), cache=cache)
            snap = Snapshot.build(
                after.resources, previous=snaps[n], previous_resources=before.resources
            )
            check(new, after, snap)
            current[n], snaps[n] = after, snap


def test_an_unchanged_route_configuration_keeps_its_bytes_and_entry() -> None:
    model = model_of({"a": 1, "b": 2})
    base = compile_node(model, EU, OPTIONS)
    first = Snapshot.build(base.resources)
    changed = model_of({"a": 1, "b": 2, "c": 0})
    # a Service-only change would not touch routes; a new RoutePolicy does, then nothing does
    after = recompile_node(base, changed, diff(model, changed))
    again = recompile_node(after, changed, diff(changed, changed))
    assert again.resources[ROUTE] is after.resources[ROUTE]
    second = Snapshot.build(after.resources, previous=first, previous_resources=base.resources)
    third = Snapshot.build(again.resources, previous=second, previous_resources=after.resources)
    assert third.types[ROUTE] is second.types[ROUTE]
    assert second.get(ROUTE).version != first.get(ROUTE).version


def test_groups_sharing_virtual_hosts_serialize_them_once() -> None:
    cache = CompileCache()
    model = model_of({"a": 0, "b": 3})
    groups = build_groups(model, OPTIONS, cache=cache)
    hosts = {key: g.compilation.virtual_hosts["a"] for key, g in groups.items()}
    assert len({id(h) for h in hosts.values()}) == 1  # one CompiledHost, bytes included
    changed = model_of({"a": 2, "b": 3})
    again = build_groups(changed, OPTIONS, groups, cache=cache)
    for key, group in again.items():
        check(changed, group.compilation, group.snapshot)
        assert group.compilation.virtual_hosts["b"] is groups[key].compilation.virtual_hosts["b"]


def test_membership_and_snapshot_builds_never_parse_the_spliced_message() -> None:
    model = model_of({"a": 1, "b": 2})
    base = compile_node(model, EU, OPTIONS)
    routes = base.resources[ROUTE]
    assert isinstance(routes, PreSerialized)
    item = routes.item(OPTIONS.route_config_name)
    assert OPTIONS.route_config_name in routes and "other" not in routes
    Snapshot.build(base.resources)
    assert item._message is None  # only the bytes were read
    assert routes[OPTIONS.route_config_name] == whole(model, base)  # parsed when asked for
