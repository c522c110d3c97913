"""The model's content hash is stable: same documents, same hash, whatever the layout."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.placement.static import place, residency_regions
from controlplane.policy.loader import load_directory, load_texts
from tests.support.policy import BASE, doc, load

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"


def test_example_is_valid_and_hash_is_pinned_to_content() -> None:
    model = load_directory(EXAMPLE)
    assert model.summary() == {
        "clusters": 3,
        "services": 3,
        "routePolicies": 3,
        "trafficPolicies": 3,
        "placements": 2,
        "globalServices": 1,
        "canaries": 1,
    }
    assert len(model.hash) == 64


def test_hash_ignores_file_layout_document_order_and_key_order() -> None:
    docs = BASE.split("---\n")
    one = load_texts([("all.yaml", BASE)])
    shuffled = docs[::-1]
    two = load_texts([(f"f{i}.yaml", d) for i, d in enumerate(shuffled)])
    reordered = [yaml.safe_dump(dict(reversed(list(yaml.safe_load(d).items())))) for d in docs]
    three = load_texts([("x.yaml", "---\n".join(reordered))])
    assert one.hash == two.hash == three.hash


def test_hash_ignores_equivalent_spellings() -> None:
    a = doc(
        "RoutePolicy", "r", "hosts: [a.example]\nhttp:\n- route: [{service: web}]\n  timeout: 2s"
    )
    b = doc(
        "RoutePolicy",
        "r",
        "hosts: [A.example]\nhttp:\n- route: [{service: web}]\n  timeout: 2000ms",
    )
    assert load(a).hash == load(b).hash


def test_hash_changes_with_content() -> None:
    a = doc(
        "RoutePolicy", "r", "hosts: [a.example]\nhttp:\n- route: [{service: web}]\n  timeout: 2s"
    )
    b = doc(
        "RoutePolicy", "r", "hosts: [a.example]\nhttp:\n- route: [{service: web}]\n  timeout: 3s"
    )
    assert load(a).hash != load(b).hash


def test_example_round_trips_through_yaml() -> None:
    model = load_directory(EXAMPLE)
    again = load_texts([("dump.yaml", model.to_yaml())])
    assert again.hash == model.hash


def test_sources_point_at_documents() -> None:
    model = load_directory(EXAMPLE)
    ref = model.sources[("Service", "checkout")]
    assert ref.file.endswith("services.yaml") and ref.line == 1


def test_static_placement_respects_taints_and_residency() -> None:
    p = doc("Placement", "web", "service: web\nclusterSelector: {matchLabels: {tier: primary}}")
    assert [c.name for c in place(load(p), "web")] == ["eu-west"]  # us-west is tainted
    tolerated = doc(
        "Placement",
        "web",
        "service: web\nclusterSelector: {matchLabels: {tier: primary}}\n"
        "tolerations: [{key: maintenance, operator: Exists}]\nresidency: {regions: [us-west]}",
    )
    model = load(tolerated)
    assert [c.name for c in place(model, "web")] == ["us-west"]
    assert residency_regions(model, "web") == frozenset({"us-west"})


def test_failover_order_sets_priority() -> None:
    p = doc(
        "Placement",
        "web",
        "service: web\nclusters: [eu-west, us-west]\ntolerations: [{key: maintenance, operator: Exists}]\n"
        "strategy: {type: failover, order: [us-west, eu-west]}",
    )
    assert [(c.name, c.priority) for c in place(load(p), "web")] == [("us-west", 0), ("eu-west", 1)]


def test_without_placement_every_cluster_with_endpoints_serves() -> None:
    assert [c.name for c in place(load(), "web")] == ["eu-west", "us-west"]


# --- property: model -> YAML -> model keeps the hash -------------------------------------------

names = st.sampled_from(["a", "b", "c", "d", "e"])
regions = st.sampled_from(["eu-west", "us-east", "ap-south"])
durations = st.sampled_from(["100ms", "1s", "2s", "250ms", "1m"])


@st.composite
def policy_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    cluster_names = sorted(draw(st.sets(names, min_size=1, max_size=4)))
    docs: list[dict[str, Any]] = []
    for c in cluster_names:
        docs.append(
            {
                "apiVersion": "ubiq.io/v1alpha1",
                "kind": "Cluster",
                "metadata": {"name": f"c-{c}", "labels": {"x": draw(names)}},
                "spec": {
                    "region": draw(regions),
                    "costWeight": draw(st.floats(0, 10, allow_nan=False)),
                    "gateway": {"address": f"127.0.0.{draw(st.integers(1, 250))}"},
                },
            }
        )
    svc_names = sorted(draw(st.sets(names, min_size=1, max_size=3)))
    for s in svc_names:
        eps = [
            {
                "cluster": f"c-{draw(st.sampled_from(cluster_names))}",
                "address": f"127.0.1.{draw(st.integers(1, 250))}",
                "labels": {"version": draw(st.sampled_from(["v1", "v2"]))},
            }
            for _ in range(draw(st.integers(0, 4)))
        ]
        docs.append(
            {
                "apiVersion": "ubiq.io/v1alpha1",
                "kind": "Service",
                "metadata": {"name": f"s-{s}"},
                "spec": {
                    "ports": [
                        {
                            "port": draw(st.integers(1, 65535)),
                            "protocol": draw(st.sampled_from(["HTTP", "HTTP2", "GRPC"])),
                        }
                    ],
                    "subsets": [
                        {"name": "v1", "labels": {"version": "v1"}},
                        {"name": "v2", "labels": {"version": "v2"}},
                    ],
                    "endpoints": eps,
                },
            }
        )
        w = draw(st.integers(0, 100))
        rule: dict[str, Any] = {
            "match": [{"path": {"prefix": "/" + draw(names)}}],
            "route": [
                {"service": f"s-{s}", "subset": "v1", "weight": w},
                {"service": f"s-{s}", "subset": "v2", "weight": 100 - w},
            ],
        }
        if draw(st.booleans()):
            rule["timeout"] = draw(durations)
        if draw(st.booleans()):
            rule["retries"] = {
                "attempts": draw(st.integers(0, 5)),
                "perTryTimeout": draw(durations),
            }
        if draw(st.booleans()):
            rule["fault"] = {
                "abort": {"httpStatus": 503, "percent": draw(st.floats(0, 100, allow_nan=False))}
            }
        docs.append(
            {
                "apiVersion": "ubiq.io/v1alpha1",
                "kind": "RoutePolicy",
                "metadata": {"name": f"r-{s}"},
                "spec": {
                    "hosts": [f"{s}.example"],
                    "http": [rule, {"route": [{"service": f"s-{s}"}]}],
                },
            }
        )
        if draw(st.booleans()):
            docs.append(
                {
                    "apiVersion": "ubiq.io/v1alpha1",
                    "kind": "TrafficPolicy",
                    "metadata": {"name": f"t-{s}"},
                    "spec": {
                        "service": f"s-{s}",
                        "connectionPool": {"maxConnections": draw(st.integers(1, 1000))},
                        "outlierDetection": {
                            "consecutive5xxErrors": draw(st.integers(0, 10)),
                            "interval": draw(durations),
                        },
                    },
                }
            )
    return docs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_sets(), st.randoms(use_true_random=False))
def test_round_trip_keeps_the_hash(docs: list[dict[str, Any]], rnd: random.Random) -> None:
    model = load_texts([("in.yaml", yaml.safe_dump_all(docs))])
    again = load_texts([("out.yaml", model.to_yaml())])
    assert again.hash == model.hash
    rnd.shuffle(docs)
    split = [(f"f{i}.yaml", yaml.safe_dump(d, sort_keys=True)) for i, d in enumerate(docs)]
    assert load_texts(split).hash == model.hash
