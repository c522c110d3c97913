"""Policy documents in etcd v3, watched: the shared store of several ``ubiq serve`` replicas.

Layout under a prefix (``etcd://HOST:PORT[,HOST:PORT...]/PREFIX``, prefix ``/ubiq`` by default)::

    PREFIX/policies/<Kind>/<name>   one YAML document each (comments kept as written)
    PREFIX/meta/set                 touched by every write made through Ubiq (see put_document)

Loading is the directory's path, document by document: every key is one "file" named
``etcd:PREFIX/policies/<Kind>/<name>``, so a problem reads ``etcd:/ubiq/policies/Service/web:4:
spec.ports: ...``. The whole set is loaded at one etcd revision and swapped in only when every
check passes; a watch on the prefix re-reads the set on every change, so each replica sees a
change as soon as etcd delivers the event (milliseconds; bench/etcd_client.py). When etcd is
unreachable the last good model keeps serving and the watch reconnects to the next member.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog
import yaml

from controlplane.errors import PolicyError, Problem, SourceError, UbiqError
from controlplane.etcd.client import (
    EtcdClient,
    EtcdError,
    KeyValue,
    delete_op,
    mod_revision_is,
    put_op,
    range_op,
)
from controlplane.policy.loader import (
    FileCache,
    load_directory,
    load_texts,
    policy_files,
    read_file,
)
from controlplane.policy.model import Model
from controlplane.policy.store import ModelKeeper
from controlplane.policy.yamlsource import decode, parse_documents

log = structlog.get_logger("ubiq.policy.etcd")

DEFAULT_PREFIX = "/ubiq"
SCHEME = "etcd://"
RETRY_S = (0.1, 0.2, 0.5, 1.0)  # reconnect backoff while no member answers
WRITE_ATTEMPTS = 5  # a write re-validates when another write landed meanwhile


class RevisionConflict(UbiqError):
    """The document changed since the writer read it (``expected`` != ``actual``)."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        self.key, self.expected, self.actual = key, expected, actual
        state = f"revision {actual}" if actual else "absent"
        super().__init__(f"{key}: expected revision {expected}, store has it {state}")


@dataclass(frozen=True, slots=True)
class EtcdLocation:
    endpoints: tuple[str, ...]
    prefix: str

    @property
    def url(self) -> str:
        hosts = ",".join(e.removeprefix("http://") for e in self.endpoints)
        return f"{SCHEME}{hosts}{self.prefix}"


def parse_etcd_url(url: str) -> EtcdLocation:
    """``etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`` -> endpoints and key prefix."""
    if not url.startswith(SCHEME):
        raise UbiqError(f"expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX, got {url!r}")
    hosts, slash, path = url.removeprefix(SCHEME).partition("/")
    endpoints: list[str] = []
    for host in hosts.split(","):
        parts = urlsplit(f"http://{host}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise UbiqError(f"{url}: expected HOST:PORT, got {host!r}")
        endpoints.append(f"http://{host}")
    prefix = "/" + path.strip("/") if slash and path.strip("/") else DEFAULT_PREFIX
    return EtcdLocation(tuple(endpoints), prefix)


@dataclass(frozen=True, slots=True)
class Document:
    kind: str
    name: str
    text: str
    line: int = 1  # where the document starts in its source


def split_documents(text: str, source: str) -> list[Document]:
    """The documents of one YAML stream, each with its own text as written (comments inside a
    document kept); raises PolicyError when the stream is not valid YAML."""
    raws = parse_documents(text, source)
    nodes = [n for n in yaml.compose_all(text, Loader=yaml.SafeLoader) if n is not None]
    out: list[Document] = []
    for raw, node in zip(raws, nodes, strict=False):
        data = raw.data if isinstance(raw.data, dict) else {}
        meta = data.get("metadata")
        name = str(meta.get("name")) if isinstance(meta, dict) else ""
        piece = text[node.start_mark.index : node.end_mark.index].rstrip() + "\n"
        if node.start_mark.column != 0 or yaml.safe_load(piece) != raw.data:
            piece = yaml.safe_dump(raw.data, sort_keys=False)
        out.append(Document(str(data.get("kind", "")), name, piece, node.start_mark.line + 1))
    return out


class EtcdStore(ModelKeeper):
    """A PolicySource on etcd; also the writer the API and ``ubiq store`` use."""

    def __init__(self, location: EtcdLocation, *, client: EtcdClient | None = None) -> None:
        super().__init__(location.url)
        self.location = location
        self.client = client or EtcdClient(location.endpoints)
        self.policies = f"{location.prefix}/policies/"
        self.meta_key = f"{location.prefix}/meta/set"
        self.revision = 0  # the etcd revision the current model (or last rejection) was read at
        self.files = (
            FileCache()
        )  # each key's document parsed and validated, until its value changes
        self._stop = asyncio.Event()

    @classmethod
    def from_url(cls, url: str) -> EtcdStore:
        return cls(parse_etcd_url(url))

    def key(self, kind: str, name: str) -> str:
        return f"{self.policies}{kind}/{name}"

    def source_name(self, key: str) -> str:
        return f"etcd:{key}"

    def _texts(self, kvs: Sequence[KeyValue]) -> list[tuple[str, bytes]]:
        if not kvs:
            raise SourceError(
                f"{self.source}: no policy documents under {self.policies}"
                " (load some with `ubiq store import DIR --etcd URL`)"
            )
        return [(self.source_name(kv.key), kv.value) for kv in kvs]

    # --- PolicySource ---------------------------------------------------------------------------

    def load(self) -> Model:
        """First load: raises PolicyError/SourceError/EtcdError when the set is not valid."""
        result = self.client.range_sync(self.policies, prefix=True)
        model = load_texts(self._texts(result.kvs), self.files)
        self.revision = result.revision
        self._swap(model)
        return model

    async def reload(self) -> bool:
        """Re-read the whole set at one revision; True when a new model was swapped in."""
        result = await self.client.range(self.policies, prefix=True)
        if result.revision <= self.revision and self._status.generation:
            return False
        self.revision = result.revision
        return await self._offer(lambda: load_texts(self._texts(result.kvs), self.files))

    async def watch(self) -> None:
        """Follow the prefix until ``stop()``: every batch of events re-reads the set once
        (events that a re-read already covered are skipped)."""
        follower = asyncio.create_task(self._follow())
        stopped = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({follower, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (follower, stopped):
                task.cancel()
            (outcome,) = await asyncio.gather(follower, return_exceptions=True)
            await self.client.aclose()
            self._watching, self._watch_error = False, "watch stopped"
        if isinstance(outcome, Exception):  # a bug in the follower, not etcd being away
            raise outcome

    async def _follow(self) -> None:
        failures = 0
        while True:
            self._watching, self._watch_error = True, None
            try:
                async for batch in self.client.watch(
                    self.policies, prefix=True, start_revision=self.revision + 1
                ):
                    failures = 0
                    newest = max((e.kv.mod_revision for e in batch.events), default=0)
                    if batch.compacted or newest > self.revision:
                        await self.reload()
                # the member closed the stream: catch up (we may have missed nothing) and rewatch
                await self.reload()
            except EtcdError as exc:
                delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                self._watching, self._watch_error = False, f"etcd unavailable: {str(exc)[:200]}"
                log.warning(
                    "policy.etcd.unavailable",
                    source=self.source,
                    error=str(exc)[:300],
                    retry_in_s=delay,
                    serving=self._model.hash[:12],
                )
                await asyncio.sleep(delay)

    def stop(self) -> None:
        self._stop.set()

    # --- writes (the API and `ubiq store` call these) -------------------------------------------

    async def put_document(
        self, kind: str, name: str, yaml_text: str, expected_revision: int
    ) -> int:
        """Write one document if its key is still at ``expected_revision`` (0: must not exist).

        The set with the new document must pass every check (PolicyError otherwise, nothing
        written). Returns the new etcd revision; raises RevisionConflict when another writer
        changed the document first: of two writers racing from the same revision exactly one wins.
        """
        key = self.key(kind, name)
        docs = split_documents(yaml_text, self.source_name(key))
        if len(docs) != 1 or (docs[0].kind, docs[0].name) != (kind, name):
            found = ", ".join(f"{d.kind}/{d.name}" for d in docs)
            raise PolicyError(
                [
                    Problem(
                        self.source_name(key),
                        1,
                        "",
                        f"expected one {kind}/{name} document, got {found}",
                    )
                ]
            )
        return await self._write(key, docs[0].text, expected_revision)

    async def delete_document(self, kind: str, name: str, expected_revision: int) -> int:
        """Delete one document if its key is still at ``expected_revision``; the set without it
        must pass every check (deleting a Service that routes still use is refused)."""
        return await self._write(self.key(kind, name), None, expected_revision)

    async def _write(self, key: str, text: str | None, expected: int) -> int:
        for _ in range(WRITE_ATTEMPTS):
            # the marker first: a write landing between the two reads moves it, so the
            # transaction below fails its compare and we validate again
            meta = await self.client.get(self.meta_key)
            meta_revision = meta.mod_revision if meta is not None else 0
            current = await self.client.range(self.policies, prefix=True)
            held = {kv.key: kv for kv in current.kvs}
            actual = held[key].mod_revision if key in held else 0
            if actual != expected:
                raise RevisionConflict(key, expected, actual)
            texts = [(self.source_name(k), kv.value) for k, kv in held.items() if k != key]
            if text is not None:
                texts.append((self.source_name(key), text.encode()))
            await asyncio.to_thread(load_texts, self._texts_or_empty(texts))
            change = put_op(key, text) if text is not None else delete_op(key)
            result = await self.client.txn(
                [mod_revision_is(key, expected), mod_revision_is(self.meta_key, meta_revision)],
                [change, put_op(self.meta_key, key)],
                [range_op(key)],
            )
            if result.succeeded:
                log.info(
                    "policy.etcd.written", key=key, deleted=text is None, revision=result.revision
                )
                return result.revision
            kvs = (
                result.responses[0].get("response_range", {}).get("kvs", [])
                if result.responses
                else []
            )
            now = KeyValue.from_json(kvs[0]).mod_revision if kvs else 0
            if now != expected:
                raise RevisionConflict(key, expected, now)
            # another document changed meanwhile: validate again against the new set
        raise UbiqError(f"{key}: the policy set kept changing; write not applied, try again")

    def _texts_or_empty(self, texts: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        if not texts:
            raise PolicyError([Problem(self.source, None, "", "the policy set would be empty")])
        return texts

    async def revision_of(self, kind: str, name: str) -> int:
        """The document's mod revision (0 when absent): what a writer passes back as expected."""
        kv = await self.client.get(self.key(kind, name))
        return kv.mod_revision if kv is not None else 0

    # --- import / export ------------------------------------------------------------------------

    async def import_directory(self, root: Path) -> tuple[int, int]:
        """Replace the whole set with a policy directory, in one transaction (all or nothing).

        The directory must be a valid set. Returns (documents written, new revision)."""
        docs = await asyncio.to_thread(directory_documents, root)
        by_key = {self.key(d.kind, d.name): d for d in docs}
        current = await self.client.range(self.policies, prefix=True)
        ops = [delete_op(kv.key) for kv in current.kvs if kv.key not in by_key]
        ops += [put_op(key, doc.text) for key, doc in sorted(by_key.items())]
        ops.append(put_op(self.meta_key, "import"))
        result = await self.client.txn([], ops)
        if not result.succeeded:
            raise EtcdError(f"{self.source}: import transaction failed")
        log.info(
            "policy.etcd.imported",
            source=str(root),
            documents=len(by_key),
            revision=result.revision,
        )
        return len(by_key), result.revision

    async def export_directory(self, root: Path) -> int:
        """Write every document to ``root/<Kind>/<name>.yaml``; ``root`` must be empty or new."""
        current = await self.client.range(self.policies, prefix=True)
        files: dict[Path, bytes] = {}
        for kv in current.kvs:
            kind, _, name = kv.key.removeprefix(self.policies).partition("/")
            if not kind or not name or "/" in name or name.startswith("."):
                raise UbiqError(f"{kv.key}: not a PREFIX/policies/<Kind>/<name> key")
            files[Path(kind) / f"{name}.yaml"] = kv.value
        await asyncio.to_thread(write_files, root, files)
        return len(files)


def directory_documents(root: Path) -> list[Document]:
    """Every document of a valid policy directory (PolicyError when it is not one)."""
    load_directory(root)
    files, _ = policy_files(root)
    docs: list[Document] = []
    for path in files:
        docs += split_documents(decode(read_file(path), str(path)), str(path))
    return docs


def write_files(root: Path, files: dict[Path, bytes]) -> None:
    if root.exists() and any(root.iterdir()):
        raise UbiqError(f"{root}: not empty; export into a new directory")
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
