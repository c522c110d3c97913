"""Parsing in worker processes gives what parsing in this thread gives: the same ParsedFile for
every file (documents, problems, hashes, sources), in order, and the same Model or the same
PolicyError from ``load_texts``, whatever the chunking, the number of workers, and whether a
worker starts, answers or dies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import controlplane
from bench.xds_compile import service_yaml
from bench.xds_compile import texts as bench_texts
from controlplane.errors import PolicyError
from controlplane.policy import parallel_parse
from controlplane.policy.loader import FileCache, load_texts, parse_file
from controlplane.policy.parallel_parse import ParseStats, default_workers, parse_files

EXAMPLES = Path(__file__).parents[2] / "examples"


def example_files(name: str) -> list[tuple[str, bytes | str]]:
    return [(str(p), p.read_bytes()) for p in sorted((EXAMPLES / name).glob("*.yaml"))]


BROKEN: list[tuple[str, bytes | str]] = [
    ("unreadable.yaml", "kind: [unclosed\n"),
    ("not-utf8.yaml", b"kind: \xff\xfe\n"),
    ("empty.yaml", ""),
    ("invalid.yaml", "apiVersion: ubiq.io/v1alpha1\nkind: Service\nmetadata: {name: x}\nspec: {ports: nope}\n"),
    ("unknown-kind.yaml", "apiVersion: ubiq.io/v1alpha1\nkind: Nope\nmetadata: {name: y}\n"),
]  # fmt: skip

SERVICES = [(f"svc-{i}.yaml", service_yaml(i)) for i in range(24)]
MIXED = example_files("three-regions") + example_files("bad") + BROKEN + SERVICES


@pytest.mark.parametrize(("workers", "chunk"), [(1, 1), (1, 5), (2, 3), (2, 64)])
def test_worker_results_equal_in_thread_results(workers: int, chunk: int) -> None:
    expected = [parse_file(name, content) for name, content in MIXED]
    assert parse_files(MIXED, parse_file, workers=workers, chunk=chunk) == expected


def test_workers_parse_chunks() -> None:
    """With ``local=False`` every chunk comes back from a worker (pickled), and is equal."""
    expected = [parse_file(name, content) for name, content in MIXED]
    stats = ParseStats()
    assert parse_files(MIXED, parse_file, workers=2, chunk=3, stats=stats, local=False) == expected
    assert stats.started >= 1
    assert stats.files_by_workers == len(MIXED)


def test_a_worker_that_dies_leaves_its_chunks_to_this_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dies = "import sys; sys.stdout.buffer.write(b'R'); sys.stdout.flush(); sys.stdin.buffer.read(9)"
    monkeypatch.setattr(parallel_parse, "WORKER_ARGV", (sys.executable, "-c", dies))
    expected = [parse_file(name, content) for name, content in MIXED]
    assert parse_files(MIXED, parse_file, workers=2, chunk=2) == expected
    stats = ParseStats()
    assert parse_files(MIXED, parse_file, workers=2, chunk=2, stats=stats, local=False) == expected
    assert stats.started == 2  # both said ready, then died holding a chunk each
    assert stats.files_by_workers == 0


def test_a_worker_that_never_starts_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    silent = "import sys; sys.stdin.buffer.read()"  # never writes READY: killed when done
    monkeypatch.setattr(parallel_parse, "WORKER_ARGV", (sys.executable, "-c", silent))
    expected = [parse_file(name, content) for name, content in MIXED]
    assert parse_files(MIXED, parse_file, workers=1, chunk=4) == expected


def test_load_texts_same_model_with_workers() -> None:
    texts: list[tuple[str, bytes | str]] = [*bench_texts(24)]
    assert load_texts(texts, workers=2) == load_texts(texts, workers=0)


def test_load_texts_same_problems_with_workers() -> None:
    texts = example_files("three-regions") + BROKEN + SERVICES
    with pytest.raises(PolicyError) as alone:
        load_texts(texts, workers=0)
    with pytest.raises(PolicyError) as parallel:
        load_texts(texts, workers=2)
    assert parallel.value.problems == alone.value.problems
    assert parallel.value.problems  # the broken files were reported


def test_cache_parses_only_changed_files_with_workers() -> None:
    cache = FileCache()
    texts: list[tuple[str, bytes | str]] = [*bench_texts(24)]
    first = load_texts(texts, cache, workers=1)
    assert cache.parsed_last == len(texts)
    changed = [*texts[:-1], (texts[-1][0], service_yaml(99))]
    second = load_texts(changed, cache, workers=1)
    assert cache.parsed_last == 1
    assert second == load_texts(changed, workers=0)
    assert second != first


def test_default_workers() -> None:
    assert default_workers(parallel_parse.MIN_FILES - 1) == 0
    assert 0 <= default_workers(parallel_parse.MIN_FILES) <= parallel_parse.MAX_WORKERS


def test_workers_import_the_code_of_this_process() -> None:
    """The worker's ``sys.path`` is this process's: it parses with the same ``controlplane``."""
    env = parallel_parse._worker_env()
    probe = "import controlplane, sys; sys.stdout.write(controlplane.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True, cwd="/"
    ).stdout
    assert found == controlplane.__file__
