"""Per-document check results kept from one load to the next, re-made only where they can change.

A per-document check (``crosscheck``: references, weights; ``advice``: warnings) reads its
document and a few facts about the rest of the set: whether a Service or Cluster of some name
exists and what it holds, which regions and zones exist, a service's residency, which documents
failed to validate. The check notes each fact it reads as a ``Token``; ``DocMemo`` keeps, per
document, the problems found and those tokens, with the ``Facts`` of the load they were made in.
At the next load a document's problems are taken again when the document is the same and no
token it read changed between the two ``Facts``; otherwise it is checked again. A document is
the same when it is the very object of the last load (its file unchanged: the file cache gives
the same objects, so its lines are the same too), or, for a document without problems (nothing
located to go stale), when its file, kind, name and ``document_hash`` are the same.

Entries are kept per file: a file whose documents are the same objects and none of whose
documents' tokens changed is taken whole (its problems in one step), so a reload that changed one
small file looks at that file's documents and at the files whose facts changed, not at each of
the other documents. Bounded by the documents of the last run: each run keeps only the entries of
its files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from controlplane.errors import Problem

if TYPE_CHECKING:
    from controlplane.policy.documents import AnyDocument, Cluster, Service
    from controlplane.policy.located import Located

#: ("Service" | "Cluster" | "RoutePolicy" | any kind, name): that document (first of its name)
#: and whether a document of that kind and name failed to validate; ("region", r): whether a
#: cluster is in r and in which zones; ("residency", service); ("known", kind or "region"): every
#: name of that kind (a message lists the first); A_CLUSTER_FAILED: whether any Cluster failed
Token = tuple[str, ...]
A_CLUSTER_FAILED: Token = ("a Cluster failed",)
NAMED_KINDS = ("Cluster", "Service", "RoutePolicy")


class RecordedLookups:
    """Services and Clusters by name for a per-document check; each look-up is noted in
    ``reads`` as a Token, so the check's result can be kept until one of them changes."""

    services: Mapping[str, Service]
    clusters: Mapping[str, Cluster]
    reads: set[Token]

    def service(self, name: str) -> Service | None:
        self.reads.add(("Service", name))
        return self.services.get(name)

    def cluster(self, name: str) -> Cluster | None:
        self.reads.add(("Cluster", name))
        return self.clusters.get(name)


@dataclass(frozen=True, slots=True)
class Facts:
    """What per-document checks may read about the rest of the set, as comparable values."""

    names: Mapping[str, Mapping[str, str]]  # kind -> name -> document_hash of the first
    failed: frozenset[tuple[str, str]] = frozenset()
    regions: Mapping[str, frozenset[str]] = field(default_factory=dict)  # region -> zones
    residency: Mapping[str, frozenset[str]] = field(default_factory=dict)  # service -> regions


def changed_tokens(old: Facts, new: Facts) -> set[Token]:
    """Every token whose value differs between two loads."""
    out: set[Token] = set()
    for kind in NAMED_KINDS:
        before, after = old.names.get(kind, {}), new.names.get(kind, {})
        out.update((kind, name) for name, _ in before.items() ^ after.items())
        if before.keys() != after.keys():
            out.add(("known", kind))
    if old.failed != new.failed:
        out.update(old.failed ^ new.failed)
        if any(k == "Cluster" for k, _ in old.failed) != any(k == "Cluster" for k, _ in new.failed):
            out.add(A_CLUSTER_FAILED)
    if old.regions != new.regions:
        out.update(("region", r) for r, _ in old.regions.items() ^ new.regions.items())
        if old.regions.keys() != new.regions.keys():
            out.add(("known", "region"))
    if old.residency != new.residency:
        out.update(("residency", s) for s, _ in old.residency.items() ^ new.residency.items())
    return out


Check = Callable[["Located"], tuple[list[Problem], frozenset[Token]]]
_Key = tuple[str, str, str, str]  # file, kind, name, document_hash


@dataclass(frozen=True, slots=True)
class _Entry:
    item: Located  # held so that its id() names it as long as the entry lives
    key: _Key
    found: tuple[Problem, ...]
    deps: frozenset[Token]


@dataclass(frozen=True, slots=True)
class _File:
    """One file's entries, and what they found and read together: an unchanged file none of
    whose reads changed is taken whole, without a look at each document."""

    located: Sequence[Located]  # the very sequence of the load (the file cache keeps it)
    entries: Mapping[int, _Entry]  # id(Located) -> entry
    clean: Mapping[_Key, frozenset[Token]]  # documents without problems -> deps
    found: tuple[Problem, ...]
    deps: frozenset[Token]


class DocMemo:
    """One per-document check's results from the last run (see the module docstring)."""

    def __init__(self) -> None:
        self._facts: Facts | None = None
        self._files: dict[str, _File] = {}
        self.checked_last = 0  # documents checked (not taken from the last run) by the last run

    def __len__(self) -> int:
        return sum(len(f.entries) for f in self._files.values())

    def files(self) -> frozenset[str]:
        """The files entries are kept for (those of the last run)."""
        return frozenset(self._files)

    def run(
        self,
        files: Sequence[tuple[str, Sequence[Located]]],
        facts: Facts,
        hash_of: Callable[[AnyDocument], str],
        check: Check,
        kinds: tuple[type, ...],
    ) -> list[Problem]:
        """The problems of ``check`` over every document of ``kinds`` in ``files`` (name and
        valid documents of each), in order."""
        first = self._facts is None  # nothing kept yet: check everything
        changed = set() if self._facts is None else changed_tokens(self._facts, facts)
        kept: dict[str, _File] = {}
        out: list[Problem] = []
        checked = 0
        for name, located in files:
            old = None if first else self._files.get(name)
            if old is not None and old.located is located and old.deps.isdisjoint(changed):
                kept[name] = old
                out += old.found
                continue
            same = old is not None and old.located is located
            entries: dict[int, _Entry] = {}
            clean: dict[_Key, frozenset[Token]] = {}
            found: list[Problem] = []
            for item in located:
                doc = item.doc
                if not isinstance(doc, kinds):
                    continue
                entry = old.entries.get(id(item)) if same and old is not None else None
                if entry is None or not entry.deps.isdisjoint(changed):
                    key = (item.raw.file, doc.kind, doc.metadata.name, hash_of(doc))
                    deps = None if old is None else old.clean.get(key)
                    if deps is not None and deps.isdisjoint(changed):
                        entry = _Entry(item, key, (), deps)
                    else:
                        problems, deps = check(item)
                        entry = _Entry(item, key, tuple(problems), deps)
                        checked += 1
                entries[id(item)] = entry
                if entry.found:
                    found += entry.found
                else:
                    clean[entry.key] = entry.deps
            deps_all = frozenset().union(*(e.deps for e in entries.values()))
            kept[name] = _File(located, entries, clean, tuple(found), deps_all)
            out += found
        self._facts, self._files = facts, kept
        self.checked_last = checked
        return out

    def keep_only(self, files: Sequence[tuple[str, Sequence[Located]]]) -> None:
        """Drop what is not about a file of ``files`` as it is now (a load that did not run the
        check, or stopped before it): still right for the ``Facts`` kept, and bounded by this
        load."""
        now = dict(files)
        self._files = {n: f for n, f in self._files.items() if now.get(n) is f.located}
