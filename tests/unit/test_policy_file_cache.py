"""Reloading with the per-file cache gives what a load without it gives, after any sequence of
file writes, creations and deletions, valid and invalid: the same Model (documents, hash, sources,
warnings) or the same errors in the same order (file, line, field, message). Only files whose
content changed are parsed again, and the cache holds the files of the last load only."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from controlplane.errors import PolicyError
from controlplane.policy.loader import FileCache, load_directory, load_texts
from controlplane.policy.model import Model
from controlplane.policy.store import DirectoryStore
from tests.support.fuzz import fuzz_settings
from tests.support.policy import GRPC_PORT, cluster, doc, join, route, service

SAME = fuzz_settings(60, HealthCheck.function_scoped_fixture)

WEB = service(
    "web",
    "[{port: 8080}]",
    "[{cluster: c1, address: 127.0.1.1, labels: {v: '1'}},"
    " {cluster: c2, address: 127.0.1.2, labels: {v: '2'}}]",
    "subsets: [{name: v1, labels: {v: '1'}}, {name: v2, labels: {v: '2'}}]",
)
ROUTE_WEB = doc(
    "RoutePolicy",
    "web",
    "hosts: [web.example]\nhttp:\n- route: [{service: web, subset: v1, weight: 90},"
    " {service: web, subset: v2, weight: 10}]",
)

#: each file name's own documents: together a valid set whose documents refer to each other
#: across files (services to clusters, routes to services and subsets, traffic policies to
#: regions and zones, a placement's residency, a GlobalService's targets, a Canary's route),
#: with warnings (rule order, proxyless gRPC, ISTIO_MUTUAL without mtlsPort)
OWN = {
    "a.yaml": [cluster("c1", zone="z1"), cluster("c2")],
    "b.yaml": [WEB, service("api", GRPC_PORT, "[{cluster: c2, address: 127.0.1.3}]")],
    "c.yml": [
        ROUTE_WEB,
        doc(
            "RoutePolicy",
            "api",
            "hosts: [api.example]\nhttp:\n- route: [{service: api}]\n"
            "  retries: {attempts: 2, retryOn: 5xx}",
        ),
        doc(
            "RoutePolicy",
            "ordered",
            "hosts: [ordered.example]\nhttp:\n"
            "- {name: wide, match: [{path: {prefix: /a}}], route: [{service: web}]}\n"
            "- {name: narrow, match: [{path: {prefix: /a/b}}], route: [{service: api}]}",
        ),
    ],
    "d/e.yaml": [
        doc(
            "TrafficPolicy",
            "web",
            "service: web\ntls: {mode: ISTIO_MUTUAL}\n"
            "locality: {distribute: [{from: c1/z1, to: {c2: 100}}]}",
        ),
        doc(
            "TrafficPolicy", "web-v2", "service: web\nsubset: v2\nlocality: {failoverRegions: [c2]}"
        ),
        doc("Placement", "web", "service: web\nclusters: [c1, c2]\nresidency: {regions: [c1, c2]}"),
    ],
    "f.yaml": [
        doc(
            "GlobalService",
            "web",
            "name: web.gtm.example\nzone: gtm.example\nservice: web\n"
            "targets: [{cluster: c1, address: 127.0.2.1}]\n"
            "clientGroups: [{name: eu, cidrs: [10.1.0.0/16], region: c1}]",
        ),
        doc(
            "Canary",
            "web",
            "service: web\nroutePolicy: web\nstableSubset: v1\ncanarySubset: v2\n"
            "steps: [10, 50, 100]\ninterval: 1m\nanalysis: {minSuccessRate: 0.99}",
        ),
        doc(
            "TrafficPolicy",
            "api",
            "service: api\nloadBalancer: {algorithm: RANDOM}\nconnectionPool: {maxConnections: 10}",
        ),
    ],
}
#: other versions of a file's documents, valid on their own, that make documents of the other
#: (unchanged) files valid or invalid, or change their warnings
ALT = {
    "a.yaml": [
        cluster("c2", region="c9"),  # region c2 gone: failoverRegions, residency dangle
        cluster("c3", zone="z3", region="c1"),  # a second zone in region c1
        cluster("c1"),  # zone z1 gone: distribute from c1/z1 dangles
        doc("Cluster", "c2", "{regoin: c2}"),  # c2 fails: references to it are not reported
        doc(
            "Cluster",
            "c1",
            "{region: c1, zone: z1, gateway: {address: 127.0.0.9, mtlsPort: 15443}}",
        ),  # the ISTIO_MUTUAL warning names c2 only
    ],
    "b.yaml": [
        service("web", "[{port: 8080}]", "[{cluster: c1, address: 127.0.1.1}]"),  # no subsets
        service("web", GRPC_PORT, "[{cluster: c3, address: 127.0.1.1}]"),  # gRPC, cluster c3
        doc("Service", "web", "ports: [{port: 8080}]\nendpoints: []\nsubsetz: []"),  # fails
        service("api", "[{port: 9000}]", "[{cluster: c2, address: 127.0.1.3}]"),  # not gRPC
    ],
    "c.yml": [
        route("api-too", "web.example", "api"),  # the same host as route web
        route("lost", "lost.example", "nowhere"),  # names no Service
        route("web", "web.example", "web"),  # no subsets: the Canary's never get traffic
        doc("RoutePolicy", "web", "hosts: [web.example]\nhttp: [{rout: []}]"),  # fails
    ],
    "d/e.yaml": [
        doc("Placement", "web", "service: web\nclusters: [c1, c2]\nresidency: {regions: [c1]}"),
        doc(
            "TrafficPolicy",
            "web",
            "service: web\nlocality: {distribute: [{from: c1, to: {c1/z9: 100}}]}",
        ),
        doc("TrafficPolicy", "web-v2", "service: web\nsubset: v3"),
    ],
    "f.yaml": [
        doc(
            "GlobalService",
            "web",
            "name: web.gtm.example\nzone: gtm.example\nservice: web\ntargets: [{cluster: c2}]",
        ),
        doc(
            "Canary",
            "web",
            "service: web\nroutePolicy: nowhere\nstableSubset: v1\ncanarySubset: v2\n"
            "steps: [10, 100]\ninterval: 1m\nanalysis: {minSuccessRate: 0.99}",
        ),
    ],
}
#: and documents that clash or dangle, or do not validate
FRAGMENTS = [
    *(d for docs in OWN.values() for d in docs),
    *(d for docs in ALT.values() for d in docs),
    cluster("c1", region="elsewhere"),  # the same name again: a duplicate when both are present
    doc("RoutePolicy", "bad", "hosts: [x.example]\nhttp: [{rout: []}]"),  # unknown field
    doc("Servce", "typo", "ports: []"),  # unknown kind
    "apiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {name: c3}\nspec: {region: [\n",
]
BROKEN: list[bytes] = [b"", b"\xff\xfe not utf-8\n", b"a: 1\na: 2\n", b"- just\n- a list\n"]
NAMES = list(OWN)


def _identity(text: str) -> str:
    return text.split("metadata:")[0] + text.split("metadata:")[1].split("}")[0]


def variants(name: str) -> list[bytes]:
    """The file's own share with one document swapped for an ALT version of it (or added)."""
    out = []
    for alt in ALT[name]:
        docs = [alt if _identity(d) == _identity(alt) else d for d in OWN[name]]
        out.append(join(*(docs if alt in docs else [*docs, alt])).encode())
    return out


def content_for(name: str) -> st.SearchStrategy[bytes]:
    own = st.lists(st.sampled_from(OWN[name] + ALT[name]), min_size=1, unique=True)
    anything = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=4)
    own_text = own.map(lambda docs: join(*docs).encode())
    whole = st.just(join(*OWN[name]).encode())  # back to the valid share
    swapped = st.sampled_from(variants(name))
    return st.one_of(
        whole,
        whole,
        swapped,
        swapped,
        own_text,
        own_text,
        own_text,
        anything.map(lambda docs: join(*docs).encode()),
        st.sampled_from(BROKEN),
    )


#: (name, content) writes or (name, None) deletions
edit = st.sampled_from(NAMES).flatmap(
    lambda name: st.tuples(st.just(name), st.none() | content_for(name))
)
edits = st.lists(edit, max_size=12)
start_files = st.one_of(
    st.just({name: join(*docs).encode() for name, docs in OWN.items()}),  # the valid set
    st.lists(edit, min_size=1, max_size=6).map(
        lambda pairs: {name: content for name, content in pairs if content is not None}
    ),
)


def outcome(load: Callable[..., Model], *args: Any) -> tuple[str, Any]:
    """What a load gives, comparable across loads: the model's content or the problems."""
    try:
        model = load(*args)
    except PolicyError as exc:
        return ("problems", [str(p) for p in exc.problems])
    return (
        "model",
        (
            model.hash,
            list(model.documents()),
            dict(model.document_hashes),
            dict(model.sources),
            model.warnings,
            model.summary(),
            model.grpc_services,
            {name: model.placement_for(name) for name in model.services},
            {
                (t.spec.service, t.spec.subset): model.traffic_policy_for(
                    t.spec.service, t.spec.subset
                )
                for t in model.traffic_policies.values()
            },
        ),
    )


@SAME
@given(start=start_files, steps=edits)
def test_incremental_load_texts_equals_a_full_load(
    start: dict[str, bytes], steps: list[tuple[str, bytes | None]]
) -> None:
    files = dict(start)
    cache = FileCache()
    for name, content in [(None, None), *steps]:
        if name is not None:
            if content is None:
                files.pop(name, None)
            else:
                files[name] = content
        texts = sorted(files.items())
        assert outcome(load_texts, texts, cache) == outcome(load_texts, texts)
        assert cache.names() == frozenset(files)  # files that vanished are dropped
        # the check results kept are about files of this load only
        assert cache.problems.files() <= frozenset(files)
        assert cache.warnings.files() <= frozenset(files)


@SAME
@given(start=start_files, steps=edits)
def test_the_store_after_any_edits_serves_what_a_full_load_gives(
    start: dict[str, bytes], steps: list[tuple[str, bytes | None]]
) -> None:
    """On disk, through ``DirectoryStore.reload``: a valid set swaps in the model a full load
    gives; an invalid one is rejected with the full load's problems and the last good model
    stays."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "d").mkdir()

        def write(name: str, content: bytes | None) -> None:
            if content is None:
                (root / name).unlink(missing_ok=True)
            else:
                (root / name).write_bytes(content)

        for name, content in start.items():
            write(name, content)
        store = DirectoryStore(root)
        for name, content in [(None, None), *steps]:
            if name is not None:
                write(name, content)
            before = store.model
            asyncio.run(store.reload())
            kind, full = outcome(load_directory, root)
            if kind == "model":
                assert store.status.ok
                assert outcome(lambda: store.model) == (kind, full)
            else:
                assert not store.status.ok
                assert [str(p) for p in store.status.problems] == full
                assert store.model is before
            assert store.files.names() <= {str(root / n) for n in NAMES}


def test_a_reload_parses_only_the_file_that_changed(tmp_path: Path) -> None:
    (tmp_path / "clusters.yaml").write_text(join(cluster("c1"), cluster("c2")))
    (tmp_path / "services.yaml").write_text(
        service("web", "[{port: 8080}]", "[{cluster: c1, address: 127.0.1.1}]")
    )
    (tmp_path / "routes.yaml").write_text(route("web", "web.example", "web"))
    cache = FileCache()
    first = load_directory(tmp_path, cache)
    assert cache.parsed_last == 3
    (tmp_path / "routes.yaml").write_text(route("web", "www.example", "web"))
    second = load_directory(tmp_path, cache)
    assert cache.parsed_last == 1
    assert second.hash == load_directory(tmp_path).hash != first.hash
    # documents of unchanged files are the very objects of the last load, and the kinds no
    # changed file holds are the very mappings of the last Model
    assert second.services["web"] is first.services["web"]
    assert second.clusters["c2"] is first.clusters["c2"]
    assert second.services is first.services
    assert second.route_policies is not first.route_policies
    (tmp_path / "clusters.yaml").unlink()
    try:
        load_directory(tmp_path, cache)
    except PolicyError as exc:  # web names cluster c1, gone with clusters.yaml
        assert any("c1" in str(p) for p in exc.problems)
    else:
        raise AssertionError("a Service naming a removed Cluster must not load")
    assert cache.parsed_last == 0
    assert cache.names() == {str(tmp_path / "services.yaml"), str(tmp_path / "routes.yaml")}


def test_a_reload_checks_again_only_changed_documents_and_those_that_name_them(
    tmp_path: Path,
) -> None:
    """A changed RoutePolicy is checked again with the Canary that names it, not the others; a
    Service that goes away makes the unchanged documents that name it dangle, and coming back
    fixes them: each step as a load from scratch gives it."""
    for name, docs in OWN.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(join(*docs))
    cache = FileCache()
    assert outcome(load_directory, tmp_path, cache) == outcome(load_directory, tmp_path)
    assert cache.problems.checked_last == len(cache.problems) == 11  # all but the Clusters
    routes = [ROUTE_WEB.replace("90}", "80}").replace("10}", "20}"), *OWN["c.yml"][1:]]
    (tmp_path / "c.yml").write_text(join(*routes))
    assert outcome(load_directory, tmp_path, cache) == outcome(load_directory, tmp_path)
    assert cache.problems.checked_last == 2  # RoutePolicy web and Canary web
    (tmp_path / "b.yaml").write_text(OWN["b.yaml"][0])  # Service api removed
    kind, found = outcome(load_directory, tmp_path, cache)
    assert (kind, found) == outcome(load_directory, tmp_path)
    assert kind == "problems"
    assert [p for p in found if "unknown service 'api'" in p] == [
        f"{tmp_path / 'c.yml'}:15: spec.http[0].route[0].service: unknown service 'api'"
        " (known: web)",
        f"{tmp_path / 'c.yml'}:25: spec.http[1].route[0].service: unknown service 'api'"
        " (known: web)",
        f"{tmp_path / 'f.yaml'}:27: spec.service: unknown service 'api' (known: web)",
    ]
    (tmp_path / "b.yaml").write_text(join(*OWN["b.yaml"]))  # and back
    assert outcome(load_directory, tmp_path, cache) == outcome(load_directory, tmp_path)
    assert cache.problems.checked_last == 4  # the three that named api, and Service api


def test_every_pair_of_swapped_documents_in_two_files_equals_a_full_load() -> None:
    """From the valid set, swap a document of one file for another version (``ALT``), then one
    of a second file, then put each back: the documents of the files left alone become valid or
    invalid, or their warnings change. Every step, with one cache all along, is what a load from
    scratch gives."""
    own = {name: join(*docs).encode() for name, docs in OWN.items()}
    swaps = [(name, text) for name in NAMES for text in variants(name)]
    files = dict(own)
    cache = FileCache()
    seen: set[str] = set()

    def step(name: str, content: bytes) -> None:
        files[name] = content
        texts = sorted(files.items())
        found = outcome(load_texts, texts, cache)
        assert found == outcome(load_texts, texts, FileCache())
        seen.add(found[0] if found[0] == "problems" or not found[1][4] else "warnings")

    for i, (first, first_text) in enumerate(swaps):
        for second, second_text in swaps[i + 1 :]:
            if second == first:
                continue
            step(first, first_text)
            step(second, second_text)
            step(first, own[first])
            step(second, own[second])
    assert seen == {"problems", "warnings"}
