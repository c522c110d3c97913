"""Limits with clear errors: a policy set's total size and document count, and a proxy group's
snapshot (resources and bytes per type). The limits are lowered here so the inputs stay small."""

from __future__ import annotations

import pytest

from controlplane.errors import PolicyError, SnapshotTooLargeError
from controlplane.policy import loader
from controlplane.policy.loader import load_texts
from controlplane.xds import snapshot as snapshot_module
from controlplane.xds.resources import CLUSTER
from tests.support.xds_replay import snapshot

CLUSTER_DOC = (
    "apiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {{name: c{i}}}\nspec: {{region: r}}\n"
)


def test_too_many_documents_is_one_located_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "MAX_DOCUMENTS", 3)
    text = "---\n".join(CLUSTER_DOC.format(i=i) for i in range(2))
    load_texts([("a.yaml", text)])
    with pytest.raises(PolicyError) as caught:
        load_texts([("a.yaml", text), ("b.yaml", text)])
    (problem,) = caught.value.problems
    assert (problem.file, problem.message) == ("b.yaml", "more than 3 documents in the policy set")


def test_too_many_bytes_in_total_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    one = CLUSTER_DOC.format(i=0)
    monkeypatch.setattr(loader, "MAX_TOTAL_BYTES", len(one) * 2)
    with pytest.raises(PolicyError) as caught:
        load_texts([(f"{i}.yaml", CLUSTER_DOC.format(i=i)) for i in range(3)])
    (problem,) = caught.value.problems
    assert problem.file == "2.yaml"
    assert problem.message == f"the policy set exceeds {len(one) * 2} bytes in total"


def test_a_snapshot_over_its_resource_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    snap = snapshot()
    snap.check_consistent()
    monkeypatch.setattr(snapshot_module, "MAX_RESOURCES_PER_TYPE", 1)
    with pytest.raises(SnapshotTooLargeError, match="2 CDS resources for one proxy group"):
        snap.check_consistent()


def test_a_snapshot_over_its_byte_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    snap = snapshot()
    size = sum(len(e.sotw_bytes) for e in snap.get(CLUSTER).entries.values())
    monkeypatch.setattr(snapshot_module, "MAX_TYPE_BYTES", size - 1)
    with pytest.raises(
        SnapshotTooLargeError, match=f"CDS resources of {size} bytes for one proxy group"
    ):
        snap.check_consistent()


def test_table_builds_with_new_serials_do_not_grow_the_rrset_cache() -> None:
    """The SOA serial changes with every build; caching it grew memory one build at a time."""
    import dataclasses

    from controlplane.gtm.dns import records
    from controlplane.gtm.dns.table import AnswerTable
    from tests.support.dns import sample_decisions, sample_groups, sample_policy, sample_zone

    def build(serial: int) -> None:
        zone = dataclasses.replace(sample_zone(), serial=serial)
        AnswerTable.build([zone], sample_decisions(), sample_groups(), [sample_policy()])

    build(1)
    cached = records._cached_rrset.cache_info().currsize
    for serial in range(2, 50):
        build(serial)
    assert records._cached_rrset.cache_info().currsize == cached
