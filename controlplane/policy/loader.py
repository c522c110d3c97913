"""Loading a policy set: files -> raw documents -> typed documents -> cross-checked Model.

``load_directory`` is all-or-nothing: it returns a Model only when every file parses and every
check passes; otherwise it raises PolicyError listing every problem found (not just the first).
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from controlplane.errors import PolicyError, Problem, SourceError
from controlplane.policy.advice import policy_warnings
from controlplane.policy.crosscheck import Located, cross_check
from controlplane.policy.filecheck import inside, read_policy_file
from controlplane.policy.model import Model, SourceRef
from controlplane.policy.validate import validate_document
from controlplane.policy.yamlsource import decode, parse_documents

POLICY_SUFFIXES = (".yaml", ".yml")
MAX_FILES = 10_000
MAX_TOTAL_BYTES = 64 * 1024 * 1024  # every file of a policy set together
MAX_DOCUMENTS = 50_000  # documents in a policy set: 10,000 services with a RoutePolicy, a
# TrafficPolicy and a Placement each fit (the 64 MiB total bounds the memory either way)


def is_policy_file(path: Path) -> bool:
    """Policy files end in .yaml/.yml; hidden files and editor temp files are never read."""
    name = path.name
    return (
        name.endswith(POLICY_SUFFIXES)
        and not name.startswith((".", "#"))
        and not name.endswith("~")
    )


def policy_files(root: Path) -> tuple[list[Path], list[Problem]]:
    """Every policy file below ``root``, sorted; symlinked directories are followed once (no loops)
    and only while they stay inside ``root`` (a ConfigMap mount's ``..data`` link does)."""
    if not root.exists():
        raise SourceError(f"{root}: no such file or directory")
    if not root.is_dir():  # one file named on its own (a FIFO too: reading it says what it is)
        return [root], []
    files: list[Path] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    top = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if not inside(real, top):
            problems.append(
                Problem(dirpath, None, "", "symlink leads outside the policy directory; not read")
            )
            dirnames.clear()
            continue
        if real in seen:
            problems.append(Problem(dirpath, None, "", "symlink loop: directory already read"))
            dirnames.clear()
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not is_policy_file(path):
                continue
            if not path.exists():
                problems.append(Problem(str(path), None, "", "broken symlink"))
                continue
            files.append(path)
        if len(files) > MAX_FILES:
            raise SourceError(f"{root}: more than {MAX_FILES} policy files")
    return files, problems


def read_file(path: Path, root: Path | None = None) -> bytes:
    """A policy file's bytes: regular files inside ``root`` only, never blocking (see filecheck)."""
    return read_policy_file(path, root)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Loading allocates millions of long-lived objects (YAML nodes, documents) and no cycles
    worth collecting; the cyclic GC would rescan them again and again (measured: more than half
    of the load time of 10k services). Pause it for the load and let it run once after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_texts(texts: Iterable[tuple[str, bytes | str]]) -> Model:
    """Build a Model from (file name, content) pairs; raises PolicyError with every problem."""
    with _gc_paused():
        return _load_texts(texts)


def _load_texts(texts: Iterable[tuple[str, bytes | str]]) -> Model:
    problems: list[Problem] = []
    located: list[Located] = []
    failed: set[tuple[str, str]] = set()
    unreadable = False  # a file we could not parse may define anything: skip cross-checks
    total = documents = 0
    for name, content in texts:
        total += len(content)
        if total > MAX_TOTAL_BYTES:
            raise PolicyError(
                [
                    Problem(
                        name, None, "", f"the policy set exceeds {MAX_TOTAL_BYTES} bytes in total"
                    )
                ]
            )
        try:
            text = decode(content, name) if isinstance(content, bytes) else content
            raws = parse_documents(text, name)
        except PolicyError as exc:
            problems.extend(exc.problems)
            unreadable = True
            continue
        documents += len(raws)
        if documents > MAX_DOCUMENTS:
            raise PolicyError(
                [Problem(name, None, "", f"more than {MAX_DOCUMENTS} documents in the policy set")]
            )
        for raw in raws:
            result = validate_document(raw)
            if isinstance(result, list):
                problems.extend(result)
                failed.add(_identity(raw.data))
            else:
                located.append(Located(result, raw))
    if not unreadable:
        problems += cross_check(located, frozenset(failed))
    if problems:
        raise PolicyError(problems)
    sources: dict[tuple[str, str], SourceRef] = {
        (item.doc.kind, item.doc.name): SourceRef(item.raw.file, item.raw.line) for item in located
    }
    return Model.build((item.doc for item in located), sources, policy_warnings(located))


def _identity(data: object) -> tuple[str, str]:
    if isinstance(data, dict):
        meta = data.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        return (str(data.get("kind")), str(name))
    return ("", "")


def load_directory(root: Path | str) -> Model:
    root = Path(root)
    files, problems = policy_files(root)
    inside_of = root if root.is_dir() else None
    if not files and not problems:
        problems.append(Problem(str(root), None, "", "no policy files (*.yaml, *.yml) found"))

    def contents() -> Iterator[tuple[str, bytes]]:
        for path in files:
            try:
                yield str(path), read_file(path, inside_of)
            except PolicyError as exc:
                problems.extend(exc.problems)

    try:
        model = load_texts(contents())
    except PolicyError as exc:
        raise PolicyError([*problems, *exc.problems]) from None
    if problems:
        raise PolicyError(problems)
    return model
