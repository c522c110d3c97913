"""A placement engine Decision compiles to the same ClusterLoadAssignment from every node: its
percent as each locality's weight, its priorities, weight-0 standbys only below priority 0."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2

from controlplane.placement.static import PlacedCluster, place
from controlplane.policy.diff import diff
from controlplane.xds.compiler.generate import compile_node
from controlplane.xds.compiler.incremental import recompile_node
from controlplane.xds.compiler.memo import CompileCache
from controlplane.xds.resources import CLUSTER, ENDPOINT
from tests.support.xds_expected import (
    AP,
    EU,
    OPTIONS,
    US,
    compile_all,
    doc,
    model,
)

API = doc(
    "Service",
    "api",
    """
    ports: [{port: 8081}]
    endpoints:
    - {cluster: eu-west, address: 10.0.0.9}
    - {cluster: us-west, address: 10.0.1.9}
    """,
)

SPLIT = {
    "web": (
        PlacedCluster("eu-west", "eu-west", 60, 0),
        PlacedCluster("eu-west-2", "eu-west", 0, 0),
        PlacedCluster("us-west", "us-west", 40, 0),
        PlacedCluster("ap-south", "ap-south", 0, 1),
    )
}


def weights(cla: endpoint_pb2.ClusterLoadAssignment) -> list[tuple[str, int, int]]:
    return [(e.locality.sub_zone, e.priority, e.load_balancing_weight.value) for e in cla.endpoints]


def decided(
    decisions: Mapping[str, Sequence[PlacedCluster]], name: str = "web", *docs: str
) -> dict[str, list[tuple[str, int, int]]]:
    """Per node region: the compiled (locality, priority, weight) of ``name``."""
    m = model(*docs)
    return {
        node.region: weights(compile_all(m, node, decisions=decisions)[ENDPOINT][name])
        for node in (EU, US, AP)
    }


def test_decision_weights_and_priorities_are_the_same_from_every_node() -> None:
    expected = [("eu-west", 0, 60), ("us-west", 0, 40), ("ap-south", 1, 1)]
    assert decided(SPLIT) == {"eu-west": expected, "us-west": expected, "ap-south": expected}
    for node in (EU, US, AP):
        cluster = compile_all(model(), node, decisions=SPLIT)[CLUSTER]["web"]
        assert cluster.common_lb_config.HasField("locality_weighted_lb_config")


def test_zero_weight_at_priority_zero_is_left_out_and_priorities_are_dense() -> None:
    only_us = {
        "web": (
            PlacedCluster("eu-west", "eu-west", 0, 0),
            PlacedCluster("us-west", "us-west", 100, 0),
            PlacedCluster("ap-south", "ap-south", 0, 3),
        )
    }
    assert decided(only_us)["eu-west"] == [("us-west", 0, 100), ("ap-south", 1, 1)]
    nothing = {"web": (PlacedCluster("eu-west", "eu-west", 0, 0),)}
    out = compile_all(model(), EU, decisions=nothing)
    assert out[ENDPOINT]["web"] == endpoint_pb2.ClusterLoadAssignment(cluster_name="web")
    assert "web" in out[CLUSTER]


@pytest.mark.parametrize(
    "locality",
    [
        "{distribute: [{from: eu-west, to: {eu-west: 80, us-west: 20}}]}",
        "{failoverRegions: [ap-south, us-west]}",
        "{enabled: false}",
    ],
)
def test_a_decision_wins_over_the_traffic_policy_locality(locality: str) -> None:
    traffic = doc("TrafficPolicy", "web", f"service: web\nlocality: {locality}")
    expected = [("eu-west", 0, 60), ("us-west", 0, 40), ("ap-south", 1, 1)]
    assert decided(SPLIT, "web", traffic) == dict.fromkeys(
        ("eu-west", "us-west", "ap-south"), expected
    )


def test_subsets_follow_the_decision_over_their_own_endpoints() -> None:
    out = compile_all(model(), US, decisions=SPLIT)
    assert weights(out[ENDPOINT]["web|v1"]) == [("eu-west", 0, 60), ("us-west", 0, 40)]
    assert weights(out[ENDPOINT]["web|v2"]) == [("ap-south", 0, 1)]  # the standby is all it has


def test_residency_still_bounds_a_decision() -> None:
    placement = doc("Placement", "web", "service: web\nresidency: {regions: [eu-west]}")
    out = decided(SPLIT, "web", placement)
    assert out["eu-west"] == [("eu-west", 0, 60)]
    assert out["us-west"] == out["ap-south"] == []


def test_a_service_without_a_decision_is_compiled_as_before() -> None:
    m = model(API)
    for node in (EU, US, AP):
        with_decision = compile_all(m, node, decisions=SPLIT)
        without = compile_all(m, node)
        assert with_decision[ENDPOINT]["api"] == without[ENDPOINT]["api"]
        assert with_decision[CLUSTER]["api"] == without[CLUSTER]["api"]
        assert with_decision[ENDPOINT]["web"] != without[ENDPOINT]["web"]


def test_a_decision_equal_to_the_static_placement_still_compiles_as_a_decision() -> None:
    m, cache = model(), CompileCache()
    static = compile_node(m, EU, OPTIONS, cache=cache)
    same = {"web": place(m, "web")}
    pinned = compile_node(m, EU, OPTIONS, decisions=same, cache=cache)  # memo must not hit
    assert pinned.resources[ENDPOINT]["web"] != static.resources[ENDPOINT]["web"]
    assert pinned.resources[ENDPOINT]["web"] == compile_all(m, EU, decisions=same)[ENDPOINT]["web"]


def test_a_changed_decision_recompiles_only_that_services_resources() -> None:
    m = model(API)
    before = compile_node(m, EU, OPTIONS, decisions=SPLIT)
    moved = {
        "web": (
            PlacedCluster("eu-west", "eu-west", 0, 1),
            PlacedCluster("us-west", "us-west", 100, 0),
        )
    }
    after = recompile_node(before, m, diff(m, m), decisions=moved)
    for kind in (CLUSTER, ENDPOINT):
        full = compile_node(m, EU, OPTIONS, decisions=moved).resources[kind]
        assert after.resources[kind] == full
        changed = {
            n for n, r in after.resources[kind].items() if r is not before.resources[kind][n]
        }
        assert changed == ({"web", "web|v1", "web|v2"} if kind == ENDPOINT else set())
    assert weights(after.resources[ENDPOINT]["web"]) == [("us-west", 0, 100), ("eu-west", 1, 1)]
    same = recompile_node(after, m, diff(m, m), decisions=dict(moved))
    assert all(
        same.resources[k][n] is after.resources[k][n]
        for k in (CLUSTER, ENDPOINT)
        for n in same.resources[k]
    )
