"""Incremental recompile and snapshot reuse give exactly what a full compile and a fresh build give."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.errors import PolicyError
from controlplane.policy.diff import diff
from controlplane.policy.loader import load_texts
from controlplane.policy.model import Model
from controlplane.xds.compiler import (
    CompileCache,
    CompileOptions,
    NodeIdentity,
    compile_node_resources,
)
from controlplane.xds.compiler.generate import NodeCompilation, compile_node
from controlplane.xds.compiler.incremental import recompile_node
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.runtime import build_groups
from controlplane.xds.snapshot import Snapshot
from tests.support.policy import doc
from tests.support.xds_expected import CLUSTERS, EU, US

OPTIONS = CompileOptions(listener_port=10000)

WEB_EPS = """
  - {cluster: eu-west, address: 10.0.0.1, labels: {version: v1}}
  - {cluster: eu-west-2, address: 10.0.0.2, labels: {version: v2}}
  - {cluster: us-west, address: 10.0.1.1, labels: {version: v1}}
  - {cluster: ap-south, address: 10.0.2.1, labels: {version: v2}}"""
SUBSETS = "subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]"

#: (kind, name) -> the texts a document may have; None: absent
VARIANTS: dict[tuple[str, str], list[str | None]] = {
    ("Service", "web"): [
        doc("Service", "web", f"ports: [{{port: 8080}}]\n{SUBSETS}\nendpoints:{WEB_EPS}"),
        doc(
            "Service",
            "web",
            f"ports: [{{port: 8080}}]\n{SUBSETS}\nendpoints:{WEB_EPS.replace('10.0.0.1', '10.0.0.9')}",
        ),
        doc(
            "Service",
            "web",
            f"ports: [{{port: 9090, name: grpc}}, {{port: 8080}}]\n{SUBSETS}\nendpoints:{WEB_EPS}",
        ),
    ],
    ("Service", "api"): [
        None,
        doc(
            "Service",
            "api",
            "ports: [{port: 80}]\nendpoints: [{cluster: us-west, address: 10.9.0.1}]",
        ),
        doc(
            "Service",
            "api",
            "ports: [{port: 80}]\nendpoints: [{cluster: eu-west, address: 10.9.0.2}]",
        ),
    ],
    ("TrafficPolicy", "web"): [
        None,
        doc(
            "TrafficPolicy",
            "web",
            "service: web\nloadBalancer: {algorithm: RING_HASH, hashKey: {header: x-user}}",
        ),
        doc(
            "TrafficPolicy",
            "web",
            "service: web\nconnectTimeout: 250ms\noutlierDetection: {consecutive5xxErrors: 5}",
        ),
    ],
    ("TrafficPolicy", "web-v1"): [
        None,
        doc(
            "TrafficPolicy",
            "web-v1",
            "service: web\nsubset: v1\nconnectionPool: {maxConnections: 7}",
        ),
    ],
    ("Placement", "web"): [
        None,
        doc("Placement", "web", "service: web\nclusters: [eu-west, us-west]"),
        doc(
            "Placement",
            "web",
            "service: web\nclusters: [eu-west, eu-west-2]\nresidency: {regions: [eu-west]}",
        ),
    ],
    ("RoutePolicy", "web"): [
        None,
        doc("RoutePolicy", "web", "hosts: [web.mesh.example]\nhttp: [{route: [{service: web}]}]"),
        doc(
            "RoutePolicy",
            "web",
            """hosts: [web.mesh.example]
http:
- match: [{path: {prefix: /v2}}]
  route: [{service: web, subset: v2}]
- route: [{service: web, subset: v1, weight: 90}, {service: web, subset: v2, weight: 10}]
  mirror: {service: api, percent: 5}""",
        ),
    ],
    ("RoutePolicy", "api"): [
        None,
        doc("RoutePolicy", "api", "hosts: [api.mesh.example]\nhttp: [{route: [{service: api}]}]"),
        doc(
            "RoutePolicy",
            "api",
            "hosts: [api.mesh.example]\nhttp: [{route: [{service: web, port: 8080}]}]",
        ),
    ],
    ("GlobalService", "web"): [
        None,
        doc(
            "GlobalService",
            "web",
            "name: web.gtm.example\nzone: gtm.example\nservice: web\nttl: 10s",
        ),
    ],
    ("Cluster", "eu-west"): [
        doc("Cluster", "eu-west", "region: eu-west\nzone: eu-west-1a"),
        doc("Cluster", "eu-west", "region: eu-west\nzone: eu-west-1c"),
    ],
}
KEYS = sorted(VARIANTS)
OTHER_CLUSTERS = "---\n".join(d for d in CLUSTERS.split("---\n") if "name: eu-west}" not in d)


def load(choice: Mapping[tuple[str, str], int]) -> Model | None:
    texts = [("clusters.yaml", OTHER_CLUSTERS)]
    for key in KEYS:
        text = VARIANTS[key][choice.get(key, 0)]
        if text is not None:
            texts.append((f"{key[0]}-{key[1]}.yaml", text))
    try:
        return load_texts(texts)
    except PolicyError:
        return None


def wire(resources: Mapping[str, Mapping[str, Message]]) -> dict[str, list[tuple[str, bytes]]]:
    """Serialized, keeping order: a full compile's order is part of its output."""
    return {
        t: [(n, m.SerializeToString(deterministic=True)) for n, m in by_name.items()]
        for t, by_name in resources.items()
    }


def snapshot_bytes(s: Snapshot) -> object:
    return (
        s.version,
        {t: (ts.version, dict(ts.entries)) for t, ts in s.types.items()},
        (dict(s.references.eds_by_cluster), s.references.eds_over_ads, s.references.rds_names),
    )


choices = st.dictionaries(
    st.sampled_from(KEYS), st.integers(min_value=0, max_value=2), max_size=len(KEYS)
).map(lambda d: {k: v % len(VARIANTS[k]) for k, v in d.items()})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(choices, min_size=1, max_size=5))
def test_incremental_equals_full_compile_for_random_edits(
    steps: list[dict[tuple[str, str], int]],
) -> None:
    first = load({})
    assert first is not None
    current = {node.cluster: compile_node(first, node, OPTIONS) for node in (EU, US)}
    snaps = {k: Snapshot.build(c.resources) for k, c in current.items()}
    for choice in steps:
        model = load(choice)
        if model is None:
            continue
        for key, before in current.items():
            after = recompile_node(before, model, diff(before.model, model))
            full = compile_node_resources(model, before.node, OPTIONS)
            assert wire(after.resources) == wire(full)
            assert list(after.resources) == [LISTENER, ROUTE, CLUSTER, ENDPOINT]
            reused = Snapshot.build(
                after.resources, previous=snaps[key], previous_resources=before.resources
            )
            assert snapshot_bytes(reused) == snapshot_bytes(Snapshot.build(full))
            reused.check_consistent()
            current[key], snaps[key] = after, reused


def model_with(**choice: int) -> Model:
    """``Service_web=1``: variant 1 of Service "web" (``_`` in a name stands for ``-``)."""
    keys = {k: (k.split("_", 1)[0], k.split("_", 1)[1].replace("_", "-")) for k in choice}
    found = load({keys[k]: v for k, v in choice.items()})
    assert found is not None
    return found


def step(before: NodeCompilation, model: Model) -> NodeCompilation:
    return recompile_node(before, model, diff(before.model, model))


def test_one_endpoint_change_touches_one_assignment_and_nothing_else() -> None:
    base = compile_node(model_with(RoutePolicy_web=1), EU, OPTIONS)
    after = step(base, model_with(RoutePolicy_web=1, Service_web=1))
    old, new = base.resources, after.resources
    assert new[LISTENER] is old[LISTENER] and new[ROUTE] is old[ROUTE]
    assert new[CLUSTER] is old[CLUSTER]  # rebuilt clusters equal the old ones: the old objects
    changed = [n for n in new[ENDPOINT] if new[ENDPOINT][n] is not old[ENDPOINT][n]]
    assert changed == ["web", "web|v1"]  # 10.0.0.1 is a v1 endpoint in eu-west


def test_nothing_changed_reuses_everything() -> None:
    base = compile_node(model_with(RoutePolicy_web=2, Service_api=1), EU, OPTIONS)
    again = step(base, model_with(RoutePolicy_web=2, Service_api=1))
    assert again.resources == base.resources and again.model is not base.model
    first = Snapshot.build(base.resources)
    second = Snapshot.build(again.resources, previous=first, previous_resources=base.resources)
    assert all(second.types[t] is first.types[t] for t in first.types)
    assert second.references is not None and second.version == first.version


def test_route_policy_change_rebuilds_only_the_route_configuration() -> None:
    base = compile_node(
        model_with(RoutePolicy_web=1, Service_api=1, RoutePolicy_api=1), EU, OPTIONS
    )
    after = step(base, model_with(RoutePolicy_web=2, Service_api=1, RoutePolicy_api=1))
    assert after.resources[CLUSTER] is base.resources[CLUSTER]
    assert after.resources[ENDPOINT] is base.resources[ENDPOINT]
    assert after.resources[ROUTE] is not base.resources[ROUTE]
    assert after.virtual_hosts["api"] is base.virtual_hosts["api"]
    assert after.routes_by_service["api"] == {"api", "web"}  # the mirror counts


def test_recompiled_virtual_hosts_go_through_the_compile_cache() -> None:
    cache = CompileCache()
    eu2 = NodeIdentity("eu-west-2", "eu-west", "eu-west-1b")  # same port: shares virtual hosts
    before = model_with(RoutePolicy_web=1, Service_api=1, RoutePolicy_api=1)
    bases = [compile_node(before, node, OPTIONS, cache=cache) for node in (EU, eu2)]
    after = model_with(RoutePolicy_web=2, Service_api=1, RoutePolicy_api=1)
    hits, misses = cache.virtual_hosts.hits, cache.virtual_hosts.misses
    first, second = (
        recompile_node(base, after, diff(before, after), cache=cache) for base in bases
    )
    assert (cache.virtual_hosts.hits, cache.virtual_hosts.misses) == (hits + 1, misses + 1)
    assert second.virtual_hosts["web"] is first.virtual_hosts["web"]
    assert wire(first.resources) == wire(compile_node_resources(after, EU, OPTIONS))


def test_compile_node_resources_is_compile_node() -> None:
    m = model_with(RoutePolicy_web=2, Service_api=1, RoutePolicy_api=1)
    assert compile_node_resources(m, US, OPTIONS) == compile_node(m, US, OPTIONS).resources


def test_first_port_change_renames_route_clusters() -> None:
    base = compile_node(model_with(RoutePolicy_api=2, Service_api=1), EU, OPTIONS)
    after = step(base, model_with(RoutePolicy_api=2, Service_api=1, Service_web=2))
    assert wire(after.resources) == wire(compile_node_resources(after.model, EU, OPTIONS))
    assert after.virtual_hosts["api"] is not base.virtual_hosts["api"]


def test_cluster_change_falls_back_to_a_full_compile() -> None:
    base = compile_node(model_with(), EU, OPTIONS)
    after = step(base, model_with(Cluster_eu_west=1))
    assert after.services["web"] is not base.services["web"]
    assert wire(after.resources) == wire(compile_node_resources(after.model, EU, OPTIONS))


def test_decisions_changes_recompile_the_services_they_name() -> None:
    model = model_with(RoutePolicy_web=1)
    base = compile_node(model, EU, OPTIONS)
    placed = base.resources  # no decisions: static placement
    index_decisions = {"web": ()}  # web placed nowhere: no endpoints at all
    after = recompile_node(base, model, diff(model, model), decisions=index_decisions)
    full = compile_node_resources(model, EU, OPTIONS, decisions=index_decisions)
    assert wire(after.resources) == wire(full)
    assert wire(after.resources) != wire(placed)
    back = recompile_node(after, model, diff(model, model), decisions=None)
    assert wire(back.resources) == wire(placed)


def test_build_groups_is_incremental_and_equals_a_fresh_build() -> None:
    first = model_with(RoutePolicy_web=1)
    groups = build_groups(first, OPTIONS)
    second = model_with(RoutePolicy_web=1, Service_web=1, GlobalService_web=1)
    again = build_groups(second, OPTIONS, groups)
    fresh = build_groups(second, OPTIONS)
    assert set(again) == set(fresh) == set(groups)
    for key in fresh:
        assert snapshot_bytes(again[key].snapshot) == snapshot_bytes(fresh[key].snapshot)
        assert again[key].snapshot.types[ROUTE] is groups[key].snapshot.types[ROUTE]
