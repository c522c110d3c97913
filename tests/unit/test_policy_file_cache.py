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
from tests.support.policy import cluster, doc, join, route, service

SAME = fuzz_settings(60, HealthCheck.function_scoped_fixture)

#: documents that make a valid set together (unless one is there twice, or what it names is not)
VALID = [
    cluster("c1"),
    cluster("c2"),
    service("web", "[{port: 8080}]", "[{cluster: c1, address: 127.0.1.1}]"),
    service("api", "[{port: 9090}]", "[{cluster: c2, address: 127.0.1.2}]"),  # c2 may be missing
    route("web", "web.example", "web"),
    route("api", "api.example", "api"),
    doc("TrafficPolicy", "web", "service: web\nloadBalancer: {simple: ROUND_ROBIN}"),
]
#: and documents that clash or dangle, or do not validate
FRAGMENTS = [
    *VALID,
    cluster("c1", region="elsewhere"),  # the same name again: a duplicate when both are present
    route("api-too", "web.example", "api"),  # the same host as route web
    route("lost", "lost.example", "nowhere"),  # names no Service
    doc("RoutePolicy", "bad", "hosts: [x.example]\nhttp: [{rout: []}]"),  # unknown field
    doc("Servce", "typo", "ports: []"),  # unknown kind
    "apiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {name: c3}\nspec: {region: [\n",
]
BROKEN: list[bytes] = [b"", b"\xff\xfe not utf-8\n", b"a: 1\na: 2\n", b"- just\n- a list\n"]
NAMES = ["a.yaml", "b.yaml", "c.yml", "d/e.yaml"]

#: each file name has its own share of VALID: a set of own shares is valid unless one dangles
OWN = {"a.yaml": VALID[0:2], "b.yaml": VALID[2:4], "c.yml": VALID[4:6], "d/e.yaml": VALID[6:]}


def content_for(name: str) -> st.SearchStrategy[bytes]:
    own = st.lists(st.sampled_from(OWN[name]), min_size=1, unique=True)
    anything = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=4)
    own_text = own.map(lambda docs: join(*docs).encode())
    return st.one_of(
        own_text,
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
start_files = st.lists(edit, min_size=1, max_size=4).map(
    lambda pairs: {name: content for name, content in pairs if content is not None}
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
    # documents of unchanged files are the very objects of the last load
    assert second.services["web"] is first.services["web"]
    assert second.clusters["c2"] is first.clusters["c2"]
    (tmp_path / "clusters.yaml").unlink()
    try:
        load_directory(tmp_path, cache)
    except PolicyError as exc:  # web names cluster c1, gone with clusters.yaml
        assert any("c1" in str(p) for p in exc.problems)
    else:
        raise AssertionError("a Service naming a removed Cluster must not load")
    assert cache.parsed_last == 0
    assert cache.names() == {str(tmp_path / "services.yaml"), str(tmp_path / "routes.yaml")}
