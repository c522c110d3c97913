"""Loading a policy set: files -> raw documents -> typed documents -> cross-checked Model.

``load_directory`` is all-or-nothing: it returns a Model only when every file parses and every
check passes; otherwise it raises PolicyError listing every problem found (not just the first).

Given a ``FileCache`` (the watched store keeps one), a file whose name and content are unchanged
since the last load is not parsed or validated again: its documents, their problems and hashes come
from the cache. The cache also keeps each document's cross-check problems and warnings
(``docmemo``: checked again only when the document or a fact its check read changed), each file's
share of the whole-set indexes (``crosscheck.FileIndex``) and the last Model (whose kinds no
changed file holds are taken again), so the result (Model or problems, in order) is the one a load
without cache gives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from controlplane import gcpolicy
from controlplane.errors import PolicyError, Problem, SourceError
from controlplane.policy.advice import policy_warnings
from controlplane.policy.crosscheck import FileIndex, SetIndex, cross_check, index_file
from controlplane.policy.docmemo import DocMemo
from controlplane.policy.documents import AnyDocument
from controlplane.policy.filecheck import inside, read_policy_file
from controlplane.policy.located import Located
from controlplane.policy.model import KIND_ORDER, Model, SourceRef, document_hash
from controlplane.policy.parallel_parse import parse_files
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


def _gc_paused() -> contextlib.AbstractContextManager[None]:
    """Loading allocates millions of long-lived objects (YAML nodes, documents) and no cycles
    worth collecting; the cyclic GC would rescan them again and again (measured: more than half
    of the load time of 10k services). Paused for the load (``gcpolicy.paused``: in ``ubiq
    serve`` a load that succeeded ends in a freeze, not a pass over every new object)."""
    return gcpolicy.paused()


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedFile:
    """One file parsed and each of its documents validated: a function of name and content only.

    ``unreadable``: the YAML itself failed (``problems`` says where) and no document was read."""

    problems: tuple[Problem, ...]
    unreadable: bool
    documents: int  # non-empty YAML documents, valid or not (counted against MAX_DOCUMENTS)
    located: tuple[Located, ...]  # the valid documents, in file order
    hashes: tuple[str, ...]  # document_hash of each of ``located``
    sources: tuple[tuple[tuple[str, str], SourceRef], ...]  # (kind, name) -> where, per located
    failed: frozenset[tuple[str, str]]  # (kind, name) of the documents that did not validate


def parse_file(name: str, content: bytes | str) -> ParsedFile:
    try:
        text = decode(content, name) if isinstance(content, bytes) else content
        raws = parse_documents(text, name)
    except PolicyError as exc:
        return ParsedFile(tuple(exc.problems), True, 0, (), (), (), frozenset())
    problems: list[Problem] = []
    located: list[Located] = []
    failed: set[tuple[str, str]] = set()
    for raw in raws:
        result = validate_document(raw)
        if isinstance(result, list):
            problems.extend(result)
            failed.add(_identity(raw.data))
        else:  # the plain data is not read after validation: the cache does not keep it
            located.append(Located(result, dataclasses.replace(raw, data=None)))
    hashes = tuple(document_hash(item.doc) for item in located)
    sources = tuple(
        ((item.doc.kind, item.doc.name), SourceRef(item.raw.file, item.raw.line))
        for item in located
    )
    return ParsedFile(
        tuple(problems), False, len(raws), tuple(located), hashes, sources, frozenset(failed)
    )


class FileCache:
    """Each policy file's ``ParsedFile``, keyed by file name and a digest of its content, so a
    reload parses and validates only the files that changed (1,000 services: the whole set took
    0.3-2 s, one changed file a few ms). Bounded by the policy set itself: after each load only
    the files of that load are kept (a file that vanished is dropped), so at most MAX_FILES
    entries of at most MAX_TOTAL_BYTES of content together. The per-document check results
    (``problems``, ``warnings``: ``docmemo.DocMemo``) and the per-file indexes are kept for the
    documents of the last load only, and the last Model made (the one serving) with its files.
    Loads that share a cache run one at a time."""

    def __init__(self, *, incremental_checks: bool = True) -> None:
        """``incremental_checks=False``: the cross-checks and warnings run on the whole set at
        every load (only parsing is cached); the benchmark's "before"."""
        self.incremental_checks = incremental_checks
        self._entries: dict[str, tuple[bytes, ParsedFile]] = {}
        self._seen: dict[str, tuple[bytes, ParsedFile]] = {}
        self.lock = threading.Lock()
        self.parsed_last = 0  # files parsed (not taken from the cache) by the last load
        #: per-document cross-check problems and warnings of the last load (``docmemo``)
        self.problems = DocMemo()
        self.warnings = DocMemo()
        self._indexes: dict[str, tuple[ParsedFile, FileIndex]] = {}  # of the last load's files
        #: the last Model made and the files it was made of (``Model.build(reuse=...)``)
        self._model: tuple[Model, dict[str, ParsedFile]] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> frozenset[str]:
        return frozenset(self._entries)

    def begin(self) -> None:
        self._seen = {}
        self.parsed_last = 0

    def get(self, name: str, content: bytes | str) -> ParsedFile:
        return self.get_all([(name, content)])[0]

    def get_all(
        self, items: Sequence[tuple[str, bytes | str]], workers: int | None = None
    ) -> list[ParsedFile]:
        """Each item's ParsedFile, in order; the files not in the cache are parsed together
        (``parallel_parse.parse_files``: in worker processes when they are many)."""
        digests = [_digest(content) for _, content in items]
        missing: list[int] = []
        for i, (name, _) in enumerate(items):
            entry = self._entries.get(name)
            if entry is None or entry[0] != digests[i]:
                missing.append(i)
        fresh = dict(
            zip(missing, parse_files([items[i] for i in missing], parse_file, workers), strict=True)
        )
        self.parsed_last += len(missing)
        out: list[ParsedFile] = []
        for i, (name, _) in enumerate(items):
            parsed = fresh.get(i)
            entry = (digests[i], parsed) if parsed is not None else self._entries[name]
            self._seen[name] = entry
            out.append(entry[1])
        return out

    def end(self) -> None:
        """Keep the files of this load only."""
        self._entries, self._seen = self._seen, {}
        self._indexes = {n: i for n, i in self._indexes.items() if n in self._entries}

    def reuse(self, files: dict[str, ParsedFile]) -> tuple[Model, frozenset[str]] | None:
        """The last Model and the kinds of document no file changed since it (a file that
        changed, came or went changes the kinds of its documents, before and after)."""
        if self._model is None or not self.incremental_checks:
            return None
        model, before = self._model
        touched: set[str] = set()
        for name in before.keys() | files.keys():
            old, new = before.get(name), files.get(name)
            if old is not new:
                for parsed in (old, new):
                    if parsed is not None:
                        touched.update(item.doc.kind for item in parsed.located)
        return model, frozenset(KIND_ORDER) - touched

    def made(self, model: Model, files: dict[str, ParsedFile]) -> None:
        self._model = (model, files)

    def index_of(self, name: str, parsed: ParsedFile) -> FileIndex:
        """``crosscheck.index_file`` of a file of this load, made again only when it changed."""
        kept = self._indexes.get(name)
        if kept is None or kept[0] is not parsed:
            kept = (parsed, index_file(parsed.located, parsed.hashes))
            self._indexes[name] = kept
        return kept[1]


def _digest(content: bytes | str) -> bytes:
    if isinstance(content, bytes):
        return b"b" + hashlib.sha256(content).digest()
    return b"s" + hashlib.sha256(content.encode("utf-8", "surrogatepass")).digest()


def load_texts(
    texts: Iterable[tuple[str, bytes | str]],
    cache: FileCache | None = None,
    workers: int | None = None,
) -> Model:
    """Build a Model from (file name, content) pairs; raises PolicyError with every problem.
    With ``cache``, unchanged files come from it (same result as without). ``workers``: worker
    processes for the files to parse (default: ``parallel_parse.default_workers``; 0: none)."""
    cache = FileCache() if cache is None else cache
    with cache.lock, _gc_paused():
        cache.begin()
        try:
            return _load_texts(texts, cache, workers)
        finally:
            cache.end()


def _load_texts(
    texts: Iterable[tuple[str, bytes | str]], cache: FileCache, workers: int | None
) -> Model:
    problems: list[Problem] = []
    located: list[Located] = []
    hashes: dict[int, str] = {}  # id(document) -> document_hash, for Model.build
    sources: dict[tuple[str, str], SourceRef] = {}
    failed: set[tuple[str, str]] = set()
    unreadable = False  # a file we could not parse may define anything: skip cross-checks
    indexes: list[FileIndex] = []
    files: list[tuple[str, Sequence[Located]]] = []  # each readable file's valid documents
    items: list[tuple[str, bytes | str]] = []
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
        items.append((name, content))
    all_parsed = cache.get_all(items, workers)
    for (name, _), parsed in zip(items, all_parsed, strict=True):
        if parsed.unreadable:
            problems.extend(parsed.problems)
            unreadable = True
            continue
        documents += parsed.documents
        if documents > MAX_DOCUMENTS:
            raise PolicyError(
                [Problem(name, None, "", f"more than {MAX_DOCUMENTS} documents in the policy set")]
            )
        problems.extend(parsed.problems)
        failed |= parsed.failed
        located.extend(parsed.located)
        file_index = cache.index_of(name, parsed)
        indexes.append(file_index)
        files.append((name, parsed.located))
        hashes.update(file_index.hash_by_id)
        sources.update(parsed.sources)

    def hash_of(doc: AnyDocument) -> str:
        return hashes[id(doc)]

    incremental = cache.incremental_checks
    index = SetIndex(indexes) if incremental else None
    if unreadable:
        cache.problems.keep_only(files)
    else:
        memo = cache.problems if incremental else None
        problems += cross_check(located, frozenset(failed), memo, hash_of, index, files)
    if problems:
        cache.warnings.keep_only(files)
        raise PolicyError(problems)
    memo = cache.warnings if incremental else None
    warnings = policy_warnings(located, memo, hash_of, index, files)
    parsed_files = dict(zip((name for name, _ in items), all_parsed, strict=True))
    reuse = cache.reuse(parsed_files)
    same = reuse[1] if reuse is not None else frozenset[str]()
    to_build = [  # the kinds taken from the last Model are left out (Model.build skips them)
        doc
        for kind in KIND_ORDER
        if kind not in same
        for file_index in indexes
        for doc in file_index.by_kind.get(kind, ())
    ]
    model = Model.build(to_build, sources, warnings, hash_of=hash_of, reuse=reuse)
    cache.made(model, parsed_files)
    return model


def _identity(data: object) -> tuple[str, str]:
    if isinstance(data, dict):
        meta = data.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        return (str(data.get("kind")), str(name))
    return ("", "")


def load_directory(
    root: Path | str, cache: FileCache | None = None, workers: int | None = None
) -> Model:
    """Every policy file below ``root`` (or ``root`` itself, a file), all-or-nothing; with
    ``cache``, only the files whose content changed since its last load are parsed again
    (``workers``: as ``load_texts``)."""
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
        model = load_texts(contents(), cache, workers)
    except PolicyError as exc:
        raise PolicyError([*problems, *exc.problems]) from None
    if problems:
        raise PolicyError(problems)
    return model
