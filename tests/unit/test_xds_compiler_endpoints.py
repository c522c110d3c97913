"""ClusterLoadAssignment: localities, failover priorities, distribution, subsets, data residency."""

from __future__ import annotations

from envoy.config.endpoint.v3 import endpoint_pb2

from controlplane.placement.static import PlacedCluster
from controlplane.xds.resources import CLUSTER, ENDPOINT
from tests.support.xds_expected import (
    AP,
    EU,
    US,
    assignment_of,
    cluster_of,
    compile_all,
    doc,
    model,
    priorities,
    web_locality,
)


def traffic(locality: str) -> str:
    return doc("TrafficPolicy", "web", f"service: web\nlocality: {locality}")


def test_own_region_first_then_placement_order() -> None:
    cla = assignment_of(model(), "web")
    assert cla == endpoint_pb2.ClusterLoadAssignment(
        cluster_name="web",
        endpoints=[
            web_locality("eu-west", 0),
            web_locality("eu-west-2", 0),
            web_locality("ap-south", 1),
            web_locality("us-west", 2),
        ],
    )
    assert priorities(assignment_of(model(), "web", US)) == [
        ("us-west", 0),
        ("ap-south", 1),
        ("eu-west", 2),
        ("eu-west-2", 2),
    ]


def test_failover_regions_orders_other_regions() -> None:
    m = model(traffic("{failoverRegions: [us-west, ap-south]}"))
    assert priorities(assignment_of(m, "web", EU)) == [
        ("eu-west", 0),
        ("eu-west-2", 0),
        ("us-west", 1),
        ("ap-south", 2),
    ]


def test_failover_pairs_for_the_node_region() -> None:
    m = model(traffic("{failover: [{from: ap-south, to: us-west}, {from: eu-west, to: ap-south}]}"))
    assert priorities(assignment_of(m, "web", AP))[:2] == [("ap-south", 0), ("us-west", 1)]
    assert priorities(assignment_of(m, "web", EU))[2] == ("ap-south", 1)


def test_distribute_uses_locality_weights_at_one_priority() -> None:
    m = model(traffic("{distribute: [{from: eu-west, to: {eu-west: 80, us-west: 20}}]}"))
    cla = assignment_of(m, "web", EU)
    assert [
        (e.locality.sub_zone, e.priority, e.load_balancing_weight.value) for e in cla.endpoints
    ] == [
        ("eu-west", 0, 40_000),
        ("eu-west-2", 0, 40_000),
        ("us-west", 0, 20_000),
    ]
    assert cluster_of(m, "web", EU).common_lb_config.HasField("locality_weighted_lb_config")
    # a node whose region has no distribute rule keeps priority failover
    assert not cluster_of(m, "web", US).common_lb_config.HasField("locality_weighted_lb_config")
    assert priorities(assignment_of(m, "web", US))[0] == ("us-west", 0)


def test_locality_disabled_puts_everything_at_priority_zero() -> None:
    m = model(traffic("{enabled: false}"))
    assert {p for _, p in priorities(assignment_of(m, "web", EU))} == {0}


def test_subset_assignment_filters_by_labels() -> None:
    assert priorities(assignment_of(model(), "web|v1")) == [("eu-west", 0), ("us-west", 1)]
    assert priorities(assignment_of(model(), "web|v2")) == [("eu-west-2", 0), ("ap-south", 1)]


def test_failover_placement_strategy_orders_regions() -> None:
    placement = doc(
        "Placement",
        "web",
        "service: web\nstrategy: {type: failover, order: [us-west, eu-west, ap-south]}",
    )
    assert priorities(assignment_of(model(placement), "web", AP)) == [
        ("ap-south", 0),
        ("us-west", 1),
        ("eu-west", 2),
        ("eu-west-2", 2),
    ]


def test_residency_keeps_endpoints_inside_and_outside_nodes_get_none() -> None:
    placement = doc("Placement", "web", "service: web\nresidency: {regions: [eu-west]}")
    m = model(placement)
    assert priorities(assignment_of(m, "web", EU)) == [("eu-west", 0), ("eu-west-2", 0)]
    outside = compile_all(m, US)
    assert outside[ENDPOINT]["web"] == endpoint_pb2.ClusterLoadAssignment(cluster_name="web")
    assert "web" in outside[CLUSTER]  # the cluster exists, so routes stay valid; Envoy answers 503


def test_zero_weight_placements_and_decisions() -> None:
    placement = doc(
        "Placement",
        "web",
        "service: web\nstrategy: {type: static, weights: {eu-west: 100, us-west: 0}}",
    )
    assert priorities(assignment_of(model(placement), "web", US)) == [("eu-west", 0)]
    decisions = {"web": [PlacedCluster("ap-south", "ap-south", 1, 0)]}
    out = compile_all(model(), EU, decisions=decisions)
    assert priorities(out[ENDPOINT]["web"]) == [("ap-south", 0)]
