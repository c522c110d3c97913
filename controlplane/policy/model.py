"""The validated policy model: immutable, indexed by name, with a stable content hash.

Every document also has its own content hash (``document_hashes``, keyed by ``(kind, name)``); the
model hash is derived from them, so ``controlplane.policy.diff`` can tell what changed between two
loads without comparing documents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson
import pydantic_core
import yaml

from controlplane.errors import Problem
from controlplane.policy.documents import (
    AnyDocument,
    Canary,
    Cluster,
    GlobalService,
    Placement,
    RoutePolicy,
    Service,
    TrafficPolicy,
)

KIND_ORDER = (
    "Cluster",
    "Service",
    "TrafficPolicy",
    "Placement",
    "RoutePolicy",
    "GlobalService",
    "Canary",
)


@dataclass(frozen=True, slots=True)
class SourceRef:
    file: str
    line: int


def _by_kind(docs: Iterable[AnyDocument]) -> dict[str, Mapping[str, Any]]:
    """kind -> {name: document} sorted by name, every kind present; one pass over the documents
    (the last of two with one name wins, as a dict comprehension over them in order would)."""
    named: dict[str, list[tuple[str, AnyDocument]]] = {kind: [] for kind in KIND_ORDER}
    for d in docs:
        named[d.kind].append((d.metadata.name, d))
    return {
        kind: MappingProxyType(dict(sorted(pairs, key=_first))) for kind, pairs in named.items()
    }


def _first(pair: tuple[str, AnyDocument]) -> str:
    return pair[0]


@dataclass(frozen=True)
class Model:
    """A consistent set of policy documents. Built only by the loader, after every check passed."""

    clusters: Mapping[str, Cluster]
    services: Mapping[str, Service]
    route_policies: Mapping[str, RoutePolicy]
    traffic_policies: Mapping[str, TrafficPolicy]
    placements: Mapping[str, Placement]
    global_services: Mapping[str, GlobalService]
    canaries: Mapping[str, Canary]
    hash: str
    #: (kind, name) -> sha256 of the document's canonical JSON, in canonical order
    document_hashes: Mapping[tuple[str, str], str] = field(
        default_factory=dict, compare=False, repr=False
    )
    sources: Mapping[tuple[str, str], SourceRef] = field(default_factory=dict, compare=False)
    _placement_by_service: Mapping[str, Placement] = field(
        default_factory=dict, compare=False, repr=False
    )
    _traffic_by_target: Mapping[tuple[str, str | None], TrafficPolicy] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: services with a GRPC port (proxyless gRPC clients need their own xDS group only then)
    grpc_services: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    #: located warnings about a valid set (``controlplane.policy.advice``), for ``ubiq validate``
    warnings: tuple[Problem, ...] = field(default=(), compare=False, repr=False)
    #: per kind: its part of ``document_hashes`` and its ``kind/name=hash`` lines, kept so that
    #: the next Model can take the kinds no file change touched (``Model.build(reuse=...)``)
    _kind_hashes: Mapping[str, Mapping[tuple[str, str], str]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _kind_lines: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        documents: Iterable[AnyDocument],
        sources: Mapping[tuple[str, str], SourceRef] | None = None,
        warnings: Iterable[Problem] = (),
        *,
        hash_of: Callable[[AnyDocument], str] | None = None,
        reuse: tuple[Model, frozenset[str]] | None = None,
    ) -> Model:
        """``hash_of``: each document's ``document_hash`` when the caller has it already (the
        loader's file cache does: a reload then hashes only the documents of changed files).
        ``reuse``: (the last Model, kinds whose documents are the very same objects as in it):
        those kinds' mappings, hashes and lookups are taken from it, not made again."""
        hash_of = document_hash if hash_of is None else hash_of
        previous, same = reuse if reuse is not None else (None, frozenset[str]())
        docs = list(documents)
        if same:
            docs = [d for d in docs if d.kind not in same]
        by_kind = _by_kind(docs)
        kind_hashes: dict[str, Mapping[tuple[str, str], str]] = {}
        kind_lines: dict[str, str] = {}
        for kind in KIND_ORDER:
            if previous is not None and kind in same:
                by_kind[kind] = previous._by_kind_name(kind)
                kind_hashes[kind] = previous._kind_hashes[kind]
                kind_lines[kind] = previous._kind_lines[kind]
                continue
            digests = {(kind, name): hash_of(d) for name, d in by_kind[kind].items()}
            kind_hashes[kind] = digests
            kind_lines[kind] = "".join(f"{k}/{n}={digest}\n" for (k, n), digest in digests.items())
        hashes: dict[tuple[str, str], str] = {}
        for kind in KIND_ORDER:  # by_kind is in canonical order already
            hashes.update(kind_hashes[kind])
        placements: Mapping[str, Placement] = by_kind["Placement"]
        traffic: Mapping[str, TrafficPolicy] = by_kind["TrafficPolicy"]
        services: Mapping[str, Service] = by_kind["Service"]
        return cls(
            clusters=by_kind["Cluster"],
            services=services,
            route_policies=by_kind["RoutePolicy"],
            traffic_policies=traffic,
            placements=placements,
            global_services=by_kind["GlobalService"],
            canaries=by_kind["Canary"],
            hash=hashlib.sha256("".join(kind_lines.values()).encode()).hexdigest(),
            document_hashes=MappingProxyType(hashes),
            sources=MappingProxyType(dict(sources or {})),
            _placement_by_service=(
                previous._placement_by_service
                if previous is not None and "Placement" in same
                else MappingProxyType(
                    {p.spec.service: p for p in reversed(list(placements.values()))}
                )
            ),
            _traffic_by_target=(
                previous._traffic_by_target
                if previous is not None and "TrafficPolicy" in same
                else MappingProxyType(
                    {(t.spec.service, t.spec.subset): t for t in reversed(list(traffic.values()))}
                )
            ),
            grpc_services=(
                previous.grpc_services
                if previous is not None and "Service" in same
                else frozenset(
                    n
                    for n, s in services.items()
                    if any(p.protocol == "GRPC" for p in s.spec.ports)
                )
            ),
            warnings=tuple(warnings),
            _kind_hashes=MappingProxyType(kind_hashes),
            _kind_lines=MappingProxyType(kind_lines),
        )

    def _by_kind_name(self, kind: str) -> Mapping[str, Any]:
        return {
            "Cluster": self.clusters,
            "Service": self.services,
            "TrafficPolicy": self.traffic_policies,
            "Placement": self.placements,
            "RoutePolicy": self.route_policies,
            "GlobalService": self.global_services,
            "Canary": self.canaries,
        }[kind]

    @classmethod
    def empty(cls) -> Model:
        return cls.build([])

    def documents(self) -> Iterator[AnyDocument]:
        """Every document, in a canonical order (kind, then name)."""
        for group in (
            self.clusters,
            self.services,
            self.traffic_policies,
            self.placements,
            self.route_policies,
            self.global_services,
            self.canaries,
        ):
            yield from group.values()

    def traffic_policy_for(self, service: str, subset: str | None = None) -> TrafficPolicy | None:
        return self._traffic_by_target.get((service, subset))

    def placement_for(self, service: str) -> Placement | None:
        return self._placement_by_service.get(service)

    def summary(self) -> dict[str, int]:
        return {
            "clusters": len(self.clusters),
            "services": len(self.services),
            "routePolicies": len(self.route_policies),
            "trafficPolicies": len(self.traffic_policies),
            "placements": len(self.placements),
            "globalServices": len(self.global_services),
            "canaries": len(self.canaries),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump_all(
            [to_plain(d, minimal=True) for d in self.documents()], sort_keys=False
        )


def to_plain(doc: AnyDocument, *, minimal: bool = False) -> dict[str, Any]:
    """A document as plain JSON-able data, keyed as written in YAML (camelCase)."""
    data: dict[str, Any] = doc.model_dump(mode="json", by_alias=True, exclude_defaults=minimal)
    return {"apiVersion": doc.api_version, "kind": doc.kind, **data}


def _canonical_key(kind: str, name: str) -> tuple[int, str]:
    return (KIND_ORDER.index(kind), name)


def document_hash(doc: AnyDocument) -> str:
    """sha256 of one document's canonical JSON: sorted keys, defaults included, as ``to_plain``
    gives it, with an infinite number written as the string ``"Infinity"`` (never ``null``, which
    is "not set"). pydantic-core and orjson make it in native code: the standard library's
    encoder made hashing the largest part of ``Model.build`` at 10,000 services."""
    data = pydantic_core.to_jsonable_python(doc, by_alias=True, inf_nan_mode="strings")
    try:
        blob = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        blob = text.encode()
    return hashlib.sha256(blob).hexdigest()


def document_hashes(documents: Iterable[AnyDocument]) -> dict[tuple[str, str], str]:
    """(kind, name) -> document_hash, in canonical order (kind, then name)."""
    docs = sorted(documents, key=lambda d: _canonical_key(d.kind, d.name))
    return {(d.kind, d.name): document_hash(d) for d in docs}


def combine_hashes(hashes: Mapping[tuple[str, str], str]) -> str:
    """The model hash: sha256 over the canonical ``kind/name=hash`` lines."""
    keys = sorted(hashes, key=lambda k: _canonical_key(*k))
    return _combine_in_order({key: hashes[key] for key in keys})


def _combine_in_order(hashes: Mapping[tuple[str, str], str]) -> str:
    """``combine_hashes`` of a mapping already in canonical order (kind, then name)."""
    blob = "".join(f"{kind}/{name}={digest}\n" for (kind, name), digest in hashes.items())
    return hashlib.sha256(blob.encode()).hexdigest()
