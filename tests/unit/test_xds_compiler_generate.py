"""The whole node compile: listener shape, consistency, determinism, memoisation, rendering."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

from controlplane.policy.loader import load_directory, load_texts
from controlplane.xds.compiler import CompileCache, CompileOptions, compile_node_resources
from controlplane.xds.compiler.listeners import HCM_FILTER, ROUTER_FILTER
from controlplane.xds.compiler.routes import CORS_FILTER, FAULT_FILTER
from controlplane.xds.render import render_node_json
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.snapshot import Snapshot
from tests.support.xds_expected import (
    CLUSTERS,
    EU,
    US,
    WEB,
    ads,
    compile_all,
    doc,
    model,
    route_policy,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "three-regions"


def serialized(resources: Mapping[str, Mapping[str, Message]]) -> dict[str, dict[str, bytes]]:
    return {
        t: {n: m.SerializeToString(deterministic=True) for n, m in by_name.items()}
        for t, by_name in resources.items()
    }


def test_listener_uses_rds_over_ads_with_fault_then_router() -> None:
    options = CompileOptions(listener_port=10000, listener_ports={"us-west": 10001})
    eu = compile_node_resources(model(), EU, options)[LISTENER]["ubiq-http"]
    us = compile_node_resources(model(), US, options)[LISTENER]["ubiq-http"]
    assert eu.address.socket_address.port_value == 10000  # type: ignore[attr-defined]
    assert us.address.socket_address.port_value == 10001  # type: ignore[attr-defined]
    (chain,) = eu.filter_chains  # type: ignore[attr-defined]
    (network,) = chain.filters
    assert network.name == HCM_FILTER
    hcm = hcm_pb2.HttpConnectionManager()
    assert network.typed_config.Unpack(hcm)
    assert hcm.rds.route_config_name == "ubiq-http"
    assert hcm.rds.config_source == ads()
    assert [f.name for f in hcm.http_filters] == [CORS_FILTER, FAULT_FILTER, ROUTER_FILTER]


def test_example_set_compiles_into_a_consistent_snapshot() -> None:
    m = load_directory(EXAMPLE)
    for node in (EU, US):
        snapshot = Snapshot.build(compile_node_resources(m, node))
        snapshot.check_consistent()
        assert snapshot.summary() == {"LDS": 1, "RDS": 1, "CDS": 5, "EDS": 5}


def test_deterministic_whatever_the_document_order() -> None:
    texts = [
        (f"{i}.yaml", t)
        for i, t in enumerate((CLUSTERS, WEB, route_policy("- route: [{service: web}]")))
    ]
    first = serialized(compile_node_resources(load_texts(texts), EU))
    again = serialized(compile_node_resources(load_texts(list(reversed(texts))), EU))
    assert first == again
    assert list(first[CLUSTER]) == sorted(first[CLUSTER])


def test_cache_recompiles_only_what_changed() -> None:
    other = doc(
        "Service", "api", "ports: [{port: 80}]\nendpoints: [{cluster: us-west, address: 10.9.0.1}]"
    )
    routes = route_policy("- route: [{service: web}]")
    cache = CompileCache()
    first = compile_all(model(other, routes), cache=cache)
    assert (cache.services.misses, cache.virtual_hosts.misses) == (2, 1)
    changed_api = doc(
        "Service", "api", "ports: [{port: 80}]\nendpoints: [{cluster: us-west, address: 10.9.0.2}]"
    )
    second = compile_all(model(changed_api, routes), cache=cache)
    assert (cache.services.hits, cache.services.misses) == (1, 3)
    assert cache.virtual_hosts.hits == 1
    assert second[CLUSTER]["web"] is first[CLUSTER]["web"]  # reused, not rebuilt
    assert second[ENDPOINT]["api"] != first[ENDPOINT]["api"]
    uncached = compile_all(model(changed_api, routes))
    assert serialized(second) == serialized(uncached)


def test_cache_distinguishes_node_regions() -> None:
    cache = CompileCache()
    eu = compile_all(model(), EU, cache=cache)
    us = compile_all(model(), US, cache=cache)
    assert eu[ENDPOINT]["web"] != us[ENDPOINT]["web"]
    assert serialized(compile_all(model(), EU, cache=cache)) == serialized(eu)


def test_cache_prune_forgets_deleted_services_policies_and_regions() -> None:
    api = doc(
        "Service", "api", "ports: [{port: 80}]\nendpoints: [{cluster: us-west, address: 10.9.0.1}]"
    )
    routes = route_policy("- route: [{service: web}]")
    other_routes = route_policy("- route: [{service: api}]", "[api.example]", name="api")
    cache = CompileCache()
    full = model(api, routes, other_routes)
    for node in (EU, US):
        compile_all(full, node, cache=cache)
    assert set(cache.services._entries) == {
        (s, n.region, n.zone) for s in ("api", "web") for n in (EU, US)
    }
    assert set(cache.virtual_hosts._entries) == {("api", 10000), ("web", 10000)}
    assert cache.prune(full) == 0
    clusters = "---".join(c for c in CLUSTERS.split("---") if "us-west" not in c)
    web = "\n".join(line for line in WEB.splitlines() if "us-west" not in line)
    smaller = model(routes, base=(clusters, web))
    assert cache.prune(smaller) == 4
    assert set(cache.services._entries) == {("web", "eu-west", EU.zone)}
    assert set(cache.virtual_hosts._entries) == {("web", 10000)}
    hits = cache.virtual_hosts.hits
    compile_all(smaller, EU, cache=cache)
    assert cache.virtual_hosts.hits == hits + 1  # what is left still serves


def test_render_node_json() -> None:
    data = json.loads(render_node_json(load_directory(EXAMPLE), EU))
    assert list(data) == ["CDS", "EDS", "LDS", "RDS", "routeOrder"]
    assert data["RDS"][0]["@type"] == ROUTE
    names = [c["name"] for c in data["CDS"]]
    assert names == sorted(names) and "checkout|v1" in names
