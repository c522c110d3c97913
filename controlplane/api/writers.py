"""Policy reads and writes against the store ``ubiq serve`` follows: a directory or etcd.

Each write is checked first: the whole set with the change applied is loaded as ``ubiq
validate`` loads it (PolicyError lists every problem, file:line). Only then does it reach the
store, in one atomic step the store's watcher picks up like any other change:

- directory: the changed file is written to a hidden temporary file in the same directory,
  fsynced and renamed over the old one (the directory is fsynced too); a delete that empties a
  file removes it. New documents go to ``<root>/<Kind>/<name>.yaml``.
- etcd: ``EtcdStore.put_document``/``delete_document``, a transaction that compares the key's
  revision (and the set's marker), so of two racing writers exactly one wins.

``resourceVersion`` is opaque: the document text's hash for a directory, the key's
``mod_revision`` for etcd. A writer that sends it back as ``If-Match`` gets ``Conflict`` when the
document changed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import yaml

from controlplane.errors import PolicyError, Problem, UbiqError
from controlplane.policy.etcd_store import Document, EtcdStore, RevisionConflict, split_documents
from controlplane.policy.loader import load_texts, policy_files, read_file
from controlplane.policy.model import KIND_ORDER, Model
from controlplane.policy.store import DirectoryStore, ModelKeeper, PolicySource
from controlplane.policy.yamlsource import decode

SERVED_WAIT_S = 10.0  # a write returns once the server serves it, or after this long

Action = Literal["created", "replaced", "deleted", "unchanged"]


class Conflict(UbiqError):
    """The document is not at the version the writer expected."""


class NotFound(UbiqError):
    pass


@dataclass(frozen=True, slots=True)
class StoredDocument:
    kind: str
    name: str
    text: str
    version: str
    source: str  # FILE:LINE or the etcd key

    def data(self) -> dict[str, object]:
        loaded = yaml.safe_load(self.text)
        return loaded if isinstance(loaded, dict) else {}


@dataclass(frozen=True, slots=True)
class Precondition:
    """``If-Match`` (a resourceVersion) and ``If-None-Match: *`` (create only)."""

    if_match: str | None = None
    create_only: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    candidate: Model  # the whole set with the change applied (validated)
    version: str | None  # the document's new resourceVersion (None: deleted, dry run)
    served: bool  # the running server serves a model with this change


def sort_key(kind: str, name: str) -> tuple[int, str]:
    return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), name)


class PolicyBackend(Protocol):
    @property
    def model(self) -> Model:
        """The model being served."""
        ...

    async def documents(self) -> list[StoredDocument]:
        """Every stored document, in canonical order (kind, then name)."""
        ...

    async def write(
        self, kind: str, name: str, text: str | None, pre: Precondition, *, dry_run: bool
    ) -> Outcome:
        """Create or replace (``text``) or delete (``None``) one document; raises PolicyError,
        Conflict, NotFound."""
        ...


def text_version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ServedWaiter:
    """Waits (bounded) until the model the server serves satisfies a condition; one
    subscription to the store for the life of the backend."""

    def __init__(self, keeper: ModelKeeper) -> None:
        self._changed = asyncio.Event()
        keeper.subscribe(lambda _model: self._changed.set())

    async def until(self, done: Callable[[], bool]) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SERVED_WAIT_S
        while not done():
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                # also re-checks every 0.5 s: a reload that swaps nothing sets no event
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
        return True


# --- directory --------------------------------------------------------------------------------


def _join(pieces: list[str]) -> str:
    return "---\n".join(pieces)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` by a hidden temporary file in the same directory, fsync,
    rename; then fsync the directory. The watcher never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_remove(path: Path) -> None:
    path.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryBackend:
    def __init__(self, store: DirectoryStore) -> None:
        self.store = store
        self.root = store.root
        self._lock = asyncio.Lock()  # one API write at a time
        self._waiter = ServedWaiter(store)

    @property
    def model(self) -> Model:
        return self.store.model

    def _read(self) -> dict[Path, str]:
        files, problems = policy_files(self.root)
        if problems:
            raise PolicyError(problems)
        inside = self.root if self.root.is_dir() else None
        return {p: decode(read_file(p, inside), str(p)) for p in files}

    def _scan(self) -> tuple[dict[Path, str], list[tuple[Path, Document]]]:
        texts = self._read()
        found = [
            (path, piece)
            for path, text in texts.items()
            for piece in split_documents(text, str(path))
        ]
        return texts, found

    async def documents(self) -> list[StoredDocument]:
        _, found = await asyncio.to_thread(self._scan)
        docs = [
            StoredDocument(p.kind, p.name, p.text, text_version(p.text), f"{path}:{p.line}")
            for path, p in found
        ]
        return sorted(docs, key=lambda d: sort_key(d.kind, d.name))

    async def write(
        self, kind: str, name: str, text: str | None, pre: Precondition, *, dry_run: bool
    ) -> Outcome:
        if not self.root.is_dir():
            raise UbiqError(f"{self.root}: writes need a policy directory, not one file")
        async with self._lock:
            plan = await asyncio.to_thread(self._plan, kind, name, text, pre)
            action, changes, candidate = plan
            if dry_run or action == "unchanged":
                served = action == "unchanged" and self.model.hash == candidate.hash
                version = text_version(text) if text is not None and not dry_run else None
                return Outcome(action, candidate, version, served)
            await asyncio.to_thread(self._apply, changes)
        served = await self._waiter.until(lambda: self.model.hash == candidate.hash)
        return Outcome(action, candidate, text_version(text) if text else None, served)

    def _plan(
        self, kind: str, name: str, text: str | None, pre: Precondition
    ) -> tuple[Action, dict[Path, str | None], Model]:
        texts, found = self._scan()
        at = next(((path, p) for path, p in found if (p.kind, p.name) == (kind, name)), None)
        if at is None:
            if text is None:
                raise NotFound(f"no {kind}/{name}")
            if pre.if_match is not None:
                raise Conflict(f"{kind}/{name}: If-Match {pre.if_match} but it does not exist")
            path = self.root / kind / f"{name}.yaml"
            old = texts.get(path)
            new_text = text if old is None else _join([old.rstrip() + "\n", text])
            changes: dict[Path, str | None] = {path: new_text}
            action: Action = "created"
        else:
            path, piece = at
            current = text_version(piece.text)
            if pre.create_only:
                raise Conflict(f"{kind}/{name}: already exists (If-None-Match: *)")
            if pre.if_match is not None and pre.if_match != current:
                raise Conflict(
                    f"{kind}/{name}: If-Match {pre.if_match}, but it is at {current}"
                    " (changed since read)"
                )
            action = (
                "deleted" if text is None else ("unchanged" if text == piece.text else "replaced")
            )
            parts: list[str] = []
            for p in split_documents(texts[path], str(path)):
                if (p.kind, p.name) != (kind, name):
                    parts.append(p.text)
                elif text is not None:
                    parts.append(text)
            changes = {path: _join(parts) if parts else None}
        candidate_texts = {**texts}
        for path, new in changes.items():
            if new is None:
                candidate_texts.pop(path, None)
            else:
                candidate_texts[path] = new
        if not candidate_texts:
            raise PolicyError([Problem(str(self.root), None, "", "the policy set would be empty")])
        candidate = load_texts((str(p), t) for p, t in sorted(candidate_texts.items()))
        return action, changes, candidate

    def _apply(self, changes: dict[Path, str | None]) -> None:
        for path, new in changes.items():
            if new is None:
                atomic_remove(path)
            else:
                atomic_write(path, new.encode())


# --- etcd ---------------------------------------------------------------------------------------


class EtcdBackend:
    def __init__(self, store: EtcdStore) -> None:
        self.store = store
        self._waiter = ServedWaiter(store)

    @property
    def model(self) -> Model:
        return self.store.model

    async def documents(self) -> list[StoredDocument]:
        result = await self.store.client.range(self.store.policies, prefix=True)
        docs = []
        for kv in result.kvs:
            kind, _, name = kv.key.removeprefix(self.store.policies).partition("/")
            text = kv.value.decode(errors="replace")
            docs.append(StoredDocument(kind, name, text, str(kv.mod_revision), kv.key))
        return sorted(docs, key=lambda d: sort_key(d.kind, d.name))

    async def write(
        self, kind: str, name: str, text: str | None, pre: Precondition, *, dry_run: bool
    ) -> Outcome:
        store = self.store
        key = store.key(kind, name)
        actual = await store.revision_of(kind, name)
        if text is None and actual == 0:
            raise NotFound(f"no {kind}/{name}")
        if pre.create_only and actual:
            raise Conflict(f"{kind}/{name}: already exists (If-None-Match: *)")
        expected = actual
        if pre.if_match is not None:
            try:
                expected = int(pre.if_match)
            except ValueError:
                raise Conflict(
                    f"{kind}/{name}: If-Match {pre.if_match!r} is not a version"
                ) from None
            if expected != actual:
                raise Conflict(
                    f"{kind}/{name}: If-Match {expected}, but it is at {actual or 'absent'}"
                )
        action: Action = "deleted" if text is None else ("replaced" if actual else "created")
        candidate = await self._candidate(key, text)
        if dry_run:
            return Outcome(action, candidate, None, False)
        try:
            if text is None:
                revision = await store.delete_document(kind, name, expected)
            else:
                revision = await store.put_document(kind, name, text, expected)
        except RevisionConflict as exc:
            raise Conflict(str(exc)) from None
        served = await self._waiter.until(
            lambda: store.revision >= revision and store.model.hash == candidate.hash
        )
        return Outcome(action, candidate, None if text is None else str(revision), served)

    async def _candidate(self, key: str, text: str | None) -> Model:
        store = self.store
        current = await store.client.range(store.policies, prefix=True)
        texts: list[tuple[str, bytes | str]] = [
            (store.source_name(kv.key), kv.value) for kv in current.kvs if kv.key != key
        ]
        if text is not None:
            texts.append((store.source_name(key), text))
        if not texts:
            raise PolicyError([Problem(store.source, None, "", "the policy set would be empty")])
        return await asyncio.to_thread(load_texts, texts)


def backend_for(source: PolicySource) -> PolicyBackend | None:
    if isinstance(source, DirectoryStore):
        return DirectoryBackend(source)
    if isinstance(source, EtcdStore):
        return EtcdBackend(source)
    return None
