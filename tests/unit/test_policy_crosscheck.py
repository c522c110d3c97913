"""Checks across documents: each names the file, line and field that is wrong."""

from __future__ import annotations

from tests.support.policy import doc, load, problems


def route(name: str, body: str) -> str:
    return doc("RoutePolicy", name, body)


def test_unknown_service_lists_known_ones() -> None:
    r = route("r", "hosts: [a.example]\nhttp:\n- route: [{service: wbe}]")
    assert problems(r) == [
        "extra0.yaml:7: spec.http[0].route[0].service: unknown service 'wbe' (known: web)"
    ]


def test_unknown_subset() -> None:
    r = route("r", "hosts: [a.example]\nhttp:\n- route: [{service: web, subset: v3}]")
    assert problems(r) == [
        "extra0.yaml:7: spec.http[0].route[0].subset: service 'web' has no subset 'v3' (it has v1, v2)"
    ]


def test_unknown_port() -> None:
    r = route("r", "hosts: [a.example]\nhttp:\n- route: [{service: web, port: 9}]")
    assert problems(r) == ["extra0.yaml:7: spec.http[0].route[0].port: service 'web' has no port 9"]


def test_weights_must_sum_to_100() -> None:
    r = route(
        "r",
        "hosts: [a.example]\nhttp:\n- route:\n  - {service: web, subset: v1, weight: 80}\n"
        "  - {service: web, subset: v2, weight: 30}",
    )
    assert problems(r) == [
        "extra0.yaml:7: spec.http[0].route: weights must sum to 100, got 110 ([80, 30])"
    ]


def test_zero_weight_is_allowed() -> None:
    r = route(
        "r",
        "hosts: [a.example]\nhttp:\n- route:\n  - {service: web, subset: v1, weight: 100}\n"
        "  - {service: web, subset: v2, weight: 0}",
    )
    assert load(r).route_policies["r"].spec.http[0].weights() == (100, 0)


def test_several_destinations_need_weights() -> None:
    r = route(
        "r",
        "hosts: [a.example]\nhttp:\n- route: [{service: web, subset: v1}, {service: web, subset: v2}]",
    )
    assert problems(r) == [
        "extra0.yaml:7: spec.http[0].route[0].weight: every destination needs a weight when a rule has several"
    ]


def test_mirror_target_is_checked() -> None:
    r = route(
        "r", "hosts: [a.example]\nhttp:\n- route: [{service: web}]\n  mirror: {service: shadow}"
    )
    assert problems(r) == [
        "extra0.yaml:8: spec.http[0].mirror.service: unknown service 'shadow' (known: web)"
    ]


def test_duplicate_names() -> None:
    r = route("r", "hosts: [a.example]\nhttp:\n- route: [{service: web}]")
    r2 = route("r", "hosts: [b.example]\nhttp:\n- route: [{service: web}]")
    assert problems(r, r2) == [
        "extra1.yaml:3: metadata.name: duplicate RoutePolicy 'r' (first defined at extra0.yaml:3)"
    ]


def test_two_policies_claiming_one_host() -> None:
    r = route("r", "hosts: [a.example]\nhttp:\n- route: [{service: web}]")
    r2 = route("s", "hosts: [b.example, A.example]\nhttp:\n- route: [{service: web}]")
    assert problems(r, r2) == [
        "extra1.yaml:5: spec.hosts[1]: host 'a.example' is already claimed by RoutePolicy 'r'"
        " at extra0.yaml:5"
    ]


def test_a_host_listed_twice_names_both_places() -> None:
    r = route("r", "hosts:\n- a.example\n- a.example\nhttp:\n- route: [{service: web}]")
    assert problems(r) == [
        "extra0.yaml:7: spec.hosts[1]: host 'a.example' is listed twice (first at extra0.yaml:6)"
    ]


def test_unknown_cluster_in_endpoints() -> None:
    svc = doc(
        "Service", "api", "ports: [{port: 80}]\nendpoints: [{cluster: mars, address: 127.0.0.1}]"
    )
    assert problems(svc) == [
        "extra0.yaml:6: spec.endpoints[0].cluster: unknown cluster 'mars' (known: eu-west, us-west)"
    ]


def test_traffic_policy_references() -> None:
    tp = doc("TrafficPolicy", "t", "service: web\nsubset: v9\nlocality: {failoverRegions: [mars]}")
    assert problems(tp) == [
        "extra0.yaml:6: spec.subset: service 'web' has no subset 'v9' (it has v1, v2)",
        "extra0.yaml:7: spec.locality.failoverRegions[0]: no cluster is in region 'mars' (known: eu-west, us-west)",
    ]


def test_one_traffic_policy_per_target() -> None:
    a = doc("TrafficPolicy", "a", "service: web")
    b = doc("TrafficPolicy", "b", "service: web")
    assert problems(a, b) == ["extra1.yaml:5: spec.service: web already has TrafficPolicy 'a'"]


def test_distribute_weights_sum() -> None:
    tp = doc(
        "TrafficPolicy",
        "t",
        "service: web\nlocality: {distribute: [{from: eu-west, to: {eu-west: 50}}]}",
    )
    assert problems(tp) == [
        "extra0.yaml:6: spec.locality.distribute[0].to: weights must sum to 100, got 50"
    ]


def test_placement_references_and_residency() -> None:
    p = doc(
        "Placement",
        "p",
        "service: web\nclusters: [eu-west, us-west, moon]\nresidency: {regions: [eu-west]}",
    )
    assert problems(p) == [
        "extra0.yaml:6: spec.clusters[2]: unknown cluster 'moon' (known: eu-west, us-west)",
        "extra0.yaml:6: spec.clusters[1]: cluster 'us-west' is in region 'us-west', outside the residency boundary",
    ]


def test_one_placement_per_service() -> None:
    a = doc("Placement", "a", "service: web")
    b = doc("Placement", "b", "service: web")
    assert problems(a, b) == [
        "extra1.yaml:5: spec.service: service 'web' already has Placement 'a'"
    ]


def test_global_service_references() -> None:
    gs = doc(
        "GlobalService",
        "g",
        """
        name: web.gtm.example
        zone: gtm.example
        service: web
        targets: [{cluster: mars}]
        clientGroups: [{name: eu, cidrs: [203.0.113.0/24]}]
        latency: {asia: {eu-west: 10ms}}
        geo: {eu: [atlantis]}
        """,
    )
    assert problems(gs) == [
        "extra0.yaml:8: spec.targets[0].cluster: unknown cluster 'mars' (known: eu-west, us-west)",
        "extra0.yaml:11: spec.geo.eu[0]: no cluster is in region 'atlantis' (known: eu-west, us-west)",
        "extra0.yaml:10: spec.latency.asia: unknown client group 'asia' (known: eu)",
    ]


def test_global_target_needs_an_address() -> None:
    base = "apiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {name: edge}\nspec: {region: edge}\n---\n"
    base += doc("Service", "web", "ports: [{port: 80}]")
    gs = doc(
        "GlobalService",
        "g",
        "name: web.gtm.example\nzone: gtm.example\nservice: web\ntargets: [{cluster: edge}]",
    )
    assert problems(gs, base=base) == [
        "extra0.yaml:8: spec.targets[0].address: cluster 'edge' has no gateway address; give the target an address"
    ]


def test_one_global_service_per_dns_name() -> None:
    a = doc("GlobalService", "a", "name: web.gtm.example\nzone: gtm.example\nservice: web")
    b = doc("GlobalService", "b", "name: WEB.gtm.example.\nzone: gtm.example\nservice: web")
    assert problems(a, b) == [
        "extra1.yaml:5: spec.name: DNS name 'web.gtm.example' is already served by GlobalService 'a'"
    ]


def test_canary_references() -> None:
    r = route("r", "hosts: [a.example]\nhttp:\n- route: [{service: web, subset: v1}]")
    c = doc("Canary", "c", "service: web\nroutePolicy: r\nstableSubset: v1\ncanarySubset: v2")
    assert problems(r, c) == [
        "extra1.yaml:8: spec.canarySubset: RoutePolicy 'r' never routes to web/v2"
    ]
    c2 = doc("Canary", "c", "service: web\nroutePolicy: nope\nstableSubset: v1\ncanarySubset: v7")
    assert problems(c2) == [
        "extra0.yaml:8: spec.canarySubset: service 'web' has no subset 'v7' (it has v1, v2)",
        "extra0.yaml:6: spec.routePolicy: unknown RoutePolicy 'nope'",
    ]


def test_invalid_document_does_not_cause_unknown_reference_noise() -> None:
    bad_service = doc("Service", "api", "ports: [{port: 0}]")
    r = route("r", "hosts: [a.example]\nhttp:\n- route: [{service: api}]")
    assert problems(bad_service, r) == [
        "extra0.yaml:5: spec.ports[0].port: must be 1..65535, got 0"
    ]


def test_aliases_are_dns_names_too() -> None:
    a = doc("GlobalService", "a", "name: web.gtm.example\nzone: gtm.example\nservice: web")
    b = doc(
        "GlobalService",
        "b",
        "name: api.gtm.example\nzone: gtm.example\naliases: [web.gtm.example]\nservice: web",
    )
    assert problems(a, b) == [
        "extra1.yaml:7: spec.aliases[0]: DNS name 'web.gtm.example' is already served by GlobalService 'a'"
    ]
    outside = doc(
        "GlobalService",
        "c",
        "name: c.gtm.example\nzone: gtm.example\naliases: [c.other.example]\nservice: web",
    )
    assert "alias 'c.other.example' must be another name inside zone" in problems(outside)[0]


def test_a_network_belongs_to_one_client_group() -> None:
    a = doc(
        "GlobalService",
        "a",
        "name: a.gtm.example\nzone: gtm.example\nservice: web\nclientGroups: [{name: eu, cidrs: [203.0.113.0/24]}]",
    )
    b = doc(
        "GlobalService",
        "b",
        "name: b.gtm.example\nzone: gtm.example\nservice: web\nclientGroups: [{name: europe, cidrs: [203.0.113.0/24]}]",
    )
    assert problems(a, b) == [
        "extra1.yaml:8: spec.clientGroups[0].cidrs[0]: network 203.0.113.0/24 is already in client"
        " group 'eu' (GlobalService 'a'); a network belongs to one group"
    ]


def test_explicit_gtm_targets_respect_residency() -> None:
    p = doc(
        "Placement", "web", "service: web\nclusters: [eu-west]\nresidency: {regions: [eu-west]}"
    )
    gs = doc(
        "GlobalService",
        "g",
        "name: web.gtm.example\nzone: gtm.example\nservice: web\ntargets: [{cluster: eu-west}, {cluster: us-west}]",
    )
    assert problems(p, gs) == [
        "extra1.yaml:8: spec.targets[1].cluster: cluster 'us-west' is in region 'us-west', outside"
        " the residency boundary of service 'web' (eu-west)"
    ]


def test_placement_weights_name_placed_clusters() -> None:
    p = doc(
        "Placement", "web", "service: web\nclusters: [eu-west]\nstrategy: {weights: {us-west: 100}}"
    )
    assert problems(p) == [
        "extra0.yaml:7: spec.strategy.weights.us-west: cluster 'us-west' is not one of spec.clusters,"
        " so it never gets traffic"
    ]
    zero = doc("Placement", "web", "service: web\nstrategy: {weights: {eu-west: 0}}")
    assert problems(zero) == [
        "extra0.yaml:6: spec.strategy.weights: weights sum to 0: no cluster would serve"
    ]
