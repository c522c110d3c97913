"""Compile units shared across node groups (``compiler.shared``) give byte-identical snapshots
to compiling every group alone, for every example policy and for random models and decisions."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.errors import PolicyError
from controlplane.placement.static import PlacedCluster
from controlplane.policy.loader import load_directory, load_texts
from controlplane.policy.model import Model
from controlplane.xds.compiler import CompileCache, CompileOptions
from controlplane.xds.compiler.effective import Decisions
from controlplane.xds.resources import CLUSTER
from controlplane.xds.runtime import build_groups
from controlplane.xds.snapshot import Snapshot
from tests.support.policy import doc
from tests.support.xds_per_group import per_group_snapshots
from tests.unit import test_workload_mtls_compile as mtls
from tests.unit.test_xds_compiler_incremental import KEYS, VARIANTS, load

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OPTIONS = CompileOptions(listener_port=10000)

#: TrafficPolicies with locality rules for "web" (the random models' service), beside VARIANTS
LOCALITY = [
    None,
    "loadBalancer: {algorithm: LEAST_REQUEST}\nlocality: {failoverRegions: [ap-south, us-west]}",
    "locality: {distribute: [{from: eu-west, to: {eu-west: 70, us-west: 30}},"
    " {from: eu-west/eu-west-1b, to: {eu-west/eu-west-1b: 100}}]}",
    "locality: {enabled: false}",
    "locality: {failover: [{from: us-west, to: ap-south}]}",
]


def snapshot_bytes(s: Snapshot) -> object:
    return (
        s.version,
        {t: (ts.version, dict(ts.entries)) for t, ts in s.types.items()},
        (dict(s.references.eds_by_cluster), s.references.eds_over_ads, s.references.rds_names),
    )


def assert_same(
    model: Model, options: CompileOptions = OPTIONS, decisions: Decisions | None = None
) -> None:
    shared = build_groups(model, options, cache=CompileCache(), decisions=decisions)
    alone = per_group_snapshots(model, options, decisions)
    assert list(shared) == list(alone)
    for key, snapshot in alone.items():
        got = shared[key].snapshot
        for type_url, ts in snapshot.types.items():
            differ = [n for n, e in ts.entries.items() if got.types[type_url].entries.get(n) != e]
            assert list(got.types[type_url].entries) == list(ts.entries), (key, type_url)
            assert not differ, (
                key,
                type_url,
                differ,
                shared[key].compilation.resources[type_url][differ[0]],
            )
        assert snapshot_bytes(got) == snapshot_bytes(snapshot), key


@pytest.mark.parametrize(
    "example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir() and p.name != "bad")
)
def test_every_example_compiles_the_same_shared(example: str) -> None:
    assert_same(load_directory(EXAMPLES / example))


def test_mutual_tls_services_compile_the_same() -> None:
    assert_same(mtls.model(), mtls.TD)
    assert_same(mtls.model(us_mtls=""), mtls.TD)


def test_groups_share_cluster_messages_when_nothing_differs() -> None:
    model = load({})
    assert model is not None
    groups = build_groups(model, OPTIONS)
    eu, us = groups["eu-west-2/proxy"].compilation, groups["us-west/proxy"].compilation
    assert eu.resources[CLUSTER]["web"] is us.resources[CLUSTER]["web"]


def with_locality(model_texts: list[tuple[str, str]], locality: str | None) -> Model | None:
    if locality is None:
        return load_texts(model_texts)
    policy = doc("TrafficPolicy", "web-locality", f"service: web\nsubset: v2\n{locality}")
    try:
        return load_texts([*model_texts, ("locality.yaml", policy)])
    except PolicyError:
        return None


placed = st.builds(
    PlacedCluster,
    name=st.sampled_from(["eu-west", "eu-west-2", "us-west", "ap-south", "gone"]),
    region=st.sampled_from(["eu-west", "us-west", "ap-south"]),
    weight=st.integers(min_value=0, max_value=100),
    priority=st.integers(min_value=0, max_value=2),
)
decisions = st.none() | st.dictionaries(
    st.sampled_from(["web", "api", "nothing"]), st.lists(placed, max_size=4).map(tuple)
)
choices = st.dictionaries(
    st.sampled_from(KEYS), st.integers(min_value=0, max_value=2), max_size=len(KEYS)
).map(lambda d: {k: v % len(VARIANTS[k]) for k, v in d.items()})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(choice=choices, locality=st.sampled_from(LOCALITY), decided=decisions)
def test_random_models_compile_the_same_shared(
    choice: dict[tuple[str, str], int], locality: str | None, decided: Decisions | None
) -> None:
    model = load(choice)
    if model is None:
        return
    if locality is not None:
        texts = [(f"{k}.yaml", t) for k, t in texts_of(choice)]
        found = with_locality(texts, locality)
        if found is not None:
            model = found
    assert_same(model, OPTIONS, decided)


def texts_of(choice: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
    from tests.unit.test_xds_compiler_incremental import OTHER_CLUSTERS

    out = [("clusters", OTHER_CLUSTERS)]
    for key in KEYS:
        text = VARIANTS[key][choice.get(key, 0)]
        if text is not None:
            out.append((f"{key[0]}-{key[1]}", text))
    return out
