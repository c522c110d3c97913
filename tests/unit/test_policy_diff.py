"""Per-document hashes and the model diff: what changed between two loads, by kind and name."""

from __future__ import annotations

from controlplane.policy.diff import ModelDiff, diff
from controlplane.policy.model import combine_hashes
from tests.support.policy import doc, load

API = doc(
    "Service", "api", "ports: [{port: 80}]\nendpoints: [{cluster: eu-west, address: 10.0.0.1}]"
)
API_2 = doc(
    "Service", "api", "ports: [{port: 80}]\nendpoints: [{cluster: eu-west, address: 10.0.0.2}]"
)
ROUTE = doc("RoutePolicy", "api", "hosts: [api.mesh.example]\nhttp: [{route: [{service: api}]}]")


def test_every_document_has_a_hash_and_the_model_hash_is_derived_from_them() -> None:
    model = load(API, ROUTE)
    assert set(model.document_hashes) == {
        ("Cluster", "eu-west"),
        ("Cluster", "us-west"),
        ("Service", "web"),
        ("Service", "api"),
        ("RoutePolicy", "api"),
    }
    assert all(len(h) == 64 for h in model.document_hashes.values())
    assert model.hash == combine_hashes(model.document_hashes)


def test_a_reload_of_the_same_texts_is_no_change() -> None:
    a, b = load(API, ROUTE), load(ROUTE, API)
    assert a is not b and a.services["api"] is not b.services["api"]
    assert diff(a, b) == ModelDiff()
    assert not diff(a, b)
    assert a.document_hashes == b.document_hashes


def test_changed_added_removed() -> None:
    before, after = load(API), load(API_2, ROUTE)
    changes = diff(before, after)
    assert changes.changed == {("Service", "api")}
    assert changes.added == {("RoutePolicy", "api")}
    assert changes.removed == frozenset()
    back = diff(after, before)
    assert back.removed == {("RoutePolicy", "api")}
    assert back.changed == {("Service", "api")}
    assert back.kinds() == {"RoutePolicy", "Service"}
    assert back.names("Service") == {"api"}
    assert sorted(back) == [("RoutePolicy", "api"), ("Service", "api")]
    assert back.summary() == {"added": 0, "changed": 1, "removed": 1}


def test_one_removed_one_added_same_count() -> None:
    other = doc(
        "Service",
        "other",
        "ports: [{port: 80}]\nendpoints: [{cluster: eu-west, address: 10.0.0.9}]",
    )
    changes = diff(load(API), load(other))
    assert changes.added == {("Service", "other")}
    assert changes.removed == {("Service", "api")}
    assert changes.changed == frozenset()


def test_only_the_content_counts_not_the_layout() -> None:
    reordered = doc(
        "Service", "api", "endpoints: [{address: 10.0.0.1, cluster: eu-west}]\nports: [{port: 80}]"
    )
    assert not diff(load(API), load(reordered))
