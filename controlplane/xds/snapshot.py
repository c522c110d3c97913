"""Frozen, versioned xDS snapshots: every resource serialized once, versions from content.

Invariants:
- a resource's bytes are ``SerializeToString(deterministic=True)``, wrapped in Any once; every
  response of every stream reuses those bytes (see ``wire``);
- a resource version is a short sha256 of its bytes; a type's version hashes the sorted
  ``(name, version)`` pairs; two replicas fed the same inputs publish the same versions;
- a Snapshot holds only bytes, strings and read-only mappings: nothing in it can be mutated;
- ``Snapshot.build(resources, previous=..., previous_resources=...)`` takes an Entry (and a whole
  TypeSnapshot, and the references found in a message) from the previous snapshot only for a
  message that is the *same object* as in ``previous_resources`` (the caller promises
  ``previous`` was built from those and that neither was mutated): identity, never equality, so
  the result is exactly what a fresh build gives, with only the new messages serialized.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from itertools import compress
from types import MappingProxyType
from typing import TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

from controlplane.errors import InconsistentSnapshotError, SnapshotTooLargeError
from controlplane.xds import wire
from controlplane.xds.resources import (
    CLUSTER,
    ENDPOINT,
    HTTP_CONNECTION_MANAGER,
    LISTENER,
    ROUTE,
    VIRTUAL_HOST,
    PreSerialized,
    Resources,
    Spliced,
    namespace_of,
    short_name,
)

_HASH_CHARS = 16
MAX_RESOURCES_PER_TYPE = 100_000  # resources of one type in one proxy group's snapshot
MAX_TYPE_BYTES = 32 * 1024 * 1024  # one type's serialized resources: a SotW response carries all
MAX_SUBSETS = 64  # distinct subscribed name sets remembered per type snapshot


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_HASH_CHARS]


def version_of(pairs: Mapping[str, str]) -> str:
    """Version of a set of resources: a hash over its sorted (name, version) pairs."""
    return _version_of_sorted(sorted(pairs.items()))


def _version_of_sorted(pairs: Iterable[tuple[str, str]]) -> str:
    """sha256 over ``name \\0 version \\n`` lines; joined in C, no Python loop per resource."""
    lines = "\n".join(map("\0".join, pairs))
    blob = (lines + "\n" if lines else "").encode()
    return hashlib.sha256(blob).hexdigest()[:_HASH_CHARS]


@dataclass(frozen=True, slots=True)
class Entry:
    """One resource, serialized once, with its wire fragments for SotW and Delta responses."""

    name: str
    version: str
    any_bytes: bytes
    sotw_bytes: bytes
    delta_bytes: bytes

    @classmethod
    def make(cls, type_url: str, name: str, message: Message) -> Entry:
        return cls.of_bytes(type_url, name, message.SerializeToString(deterministic=True))

    @classmethod
    def of_bytes(cls, type_url: str, name: str, value: bytes) -> Entry:
        """The Entry of a resource whose deterministic serialization is ``value``."""
        version = content_hash(value)
        any_bytes = wire.any_message(type_url, value)
        return cls(
            name=name,
            version=version,
            any_bytes=any_bytes,
            sotw_bytes=wire.sotw_resource(any_bytes),
            delta_bytes=wire.delta_resource(name, version, any_bytes),
        )


class EntryMemo:
    """Entries made during one build round, by message identity.

    Groups often hold the very same compiled message objects (a cluster's Envoy and proxyless
    groups share every cluster, endpoint and route; clusters of one region share services), so
    one memo passed to every ``Snapshot.build`` of a round serializes each message once. The memo
    keeps the messages alive, so an ``id`` cannot be reused while it is held: keep one per round.
    """

    def __init__(self) -> None:
        self._made: dict[tuple[str, str, int], tuple[object, Entry]] = {}

    def make(self, type_url: str, name: str, message: Message) -> Entry:
        key = (type_url, name, id(message))
        found = self._made.get(key)
        if found is not None and found[0] is message:
            return found[1]
        entry = Entry.make(type_url, name, message)
        self._made[key] = (message, entry)
        return entry

    def of_item(self, type_url: str, name: str, item: Spliced[Message]) -> Entry:
        """The Entry of a pre-serialized item, made once per round (by item identity)."""
        key = (type_url, name, id(item))
        found = self._made.get(key)
        if found is not None and found[0] is item:
            return found[1]
        entry = Entry.of_bytes(type_url, name, item.serialized())
        self._made[key] = (item, entry)
        return entry


MakeEntry = Callable[[str, str, Message], Entry]
MakeHeldEntry = Callable[[str, str, Spliced[Message]], Entry]
T = TypeVar("T")


def _entry_of_item(type_url: str, name: str, item: Spliced[Message]) -> Entry:
    return Entry.of_bytes(type_url, name, item.serialized())


_EMPTY: Mapping[str, Entry] = MappingProxyType({})
_EMPTY_MESSAGES: Mapping[str, Message] = MappingProxyType({})
_NAME_VERSION = operator.attrgetter("name", "version")
_SOTW_BYTES = operator.attrgetter("sotw_bytes")


@dataclass(frozen=True, slots=True)
class TypeSnapshot:
    type_url: str
    version: str
    entries: Mapping[str, Entry]
    _joined: list[bytes] = field(default_factory=list, init=False, repr=False, compare=False)
    _size: list[int] = field(default_factory=list, init=False, repr=False, compare=False)
    # subscribed name set -> the entries it selects (read-only, shared by every stream that
    # subscribes to an equal set: streams of a group hold one interned set)
    _subsets: dict[frozenset[str], Mapping[str, Entry]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # the same for namespaced types (VHDS): subscribed namespaces -> the entries in them
    _namespaced: dict[frozenset[str], Mapping[str, Entry]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __len__(self) -> int:
        return len(self.entries)

    def size(self) -> int:
        """Bytes of every entry's SotW resource (what one response carries), summed once."""
        if not self._size:
            self._size.append(sum(map(len, map(_SOTW_BYTES, self.entries.values()))))
        return self._size[0]

    def subset(self, names: frozenset[str]) -> Mapping[str, Entry]:
        """The entries named in ``names``, in name order; ``entries`` itself when ``names``
        covers them all. Worked out once per distinct set and type snapshot (at most
        ``MAX_SUBSETS`` kept), not once per stream."""
        found = self._subsets.get(names)
        if found is not None:
            return found
        entries = self.entries
        if len(names) >= len(entries) and all(n in names for n in entries):
            chosen: Mapping[str, Entry] = entries
        else:
            chosen = MappingProxyType({n: entries[n] for n in sorted(names) if n in entries})
        if len(self._subsets) >= MAX_SUBSETS:
            self._subsets.clear()
        self._subsets[names] = chosen
        return chosen

    def in_namespaces(self, names: frozenset[str]) -> Mapping[str, Entry]:
        """The entries named ``N/...`` (or ``N``) for a namespace ``N`` in ``names``, in name
        order; ``entries`` itself when that is all of them. Worked out once per distinct set."""
        found = self._namespaced.get(names)
        if found is not None:
            return found
        entries = self.entries
        picked = [n for n in entries if n in names or namespace_of(n) in names]
        chosen: Mapping[str, Entry] = (
            entries
            if len(picked) == len(entries)
            else MappingProxyType({n: entries[n] for n in picked})
        )
        if len(self._namespaced) >= MAX_SUBSETS:
            self._namespaced.clear()
        self._namespaced[names] = chosen
        return chosen

    def sotw_resources(self) -> bytes:
        """Every entry's SotW resource bytes joined, once per type snapshot: the streams that
        are sent the whole type share these bytes instead of each joining them."""
        joined = self._joined
        if not joined:
            joined.append(b"".join([e.sotw_bytes for e in self.entries.values()]))
        return joined[0]


@dataclass(frozen=True, slots=True)
class References:
    """Names one type's resources point at, taken from the messages at build time."""

    eds_by_cluster: Mapping[str, str] = field(default_factory=dict)  # EDS cluster -> CLA name
    eds_over_ads: frozenset[str] = frozenset()  # EDS clusters whose endpoints come over ADS
    rds_names: frozenset[str] = frozenset()  # route configuration names wanted by listeners
    vhds_names: frozenset[str] = frozenset()  # route configurations whose hosts come over VHDS


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: str
    types: Mapping[str, TypeSnapshot]
    references: References = field(default_factory=References)

    @classmethod
    def build(
        cls,
        resources: Resources,
        *,
        previous: Snapshot | None = None,
        previous_resources: Resources | None = None,
        memo: EntryMemo | None = None,
    ) -> Snapshot:
        """Serialize ``resources``, reusing what ``previous`` holds for identical messages and,
        with a ``memo``, what other snapshots of the same round already serialized."""
        make: MakeEntry = memo.make if memo is not None else Entry.make
        held: MakeHeldEntry = memo.of_item if memo is not None else _entry_of_item
        before: Resources = previous_resources if previous_resources is not None else {}
        if previous_resources is None:
            previous = None
        types: dict[str, TypeSnapshot] = {}
        for type_url in sorted(resources):
            by_name = resources[type_url]
            old_by_name = before.get(type_url)
            old = previous.types.get(type_url) if previous is not None else None
            if old is not None and by_name is old_by_name:
                types[type_url] = old
                continue
            if isinstance(by_name, PreSerialized):  # entries from the held bytes, no message
                was = old_by_name.held() if isinstance(old_by_name, PreSerialized) else None
                entries = _reused_entries(by_name.held(), old, was, partial(held, type_url))
            else:
                entries = _reused_entries(by_name, old, old_by_name, partial(make, type_url))
            pairs = map(_NAME_VERSION, entries.values())
            types[type_url] = TypeSnapshot(
                type_url, _version_of_sorted(pairs), MappingProxyType(entries)
            )
        version = version_of({t: ts.version for t, ts in types.items()})
        refs = _references(resources, previous, before)
        return cls(version=version, types=MappingProxyType(types), references=refs)

    def get(self, type_url: str) -> TypeSnapshot:
        found = self.types.get(type_url)
        return found if found is not None else TypeSnapshot(type_url, version_of({}), _EMPTY)

    def type_version(self, type_url: str) -> str:
        return self.get(type_url).version

    def check_consistent(self, previous: Snapshot | None = None) -> None:
        """Raise InconsistentSnapshotError unless EDS names match CDS and RDS names exist.

        ``previous``: a snapshot that passed this check; what this one shares with it by
        identity (the EDS type and the EDS references: a RoutePolicy change) is not checked
        again (two 10k-name sets per node group)."""
        problems: list[str] = []
        eds = self.get(ENDPOINT)
        same_eds = (
            previous is not None
            and eds is previous.types.get(ENDPOINT)
            and self.references.eds_by_cluster is previous.references.eds_by_cluster
        )
        if not same_eds:
            clas = set(eds.entries)
            wanted = set(self.references.eds_by_cluster.values())
            for name in sorted(wanted - clas):
                problems.append(
                    f"EDS cluster wants ClusterLoadAssignment {name!r}, which is missing"
                )
            for name in sorted(clas - wanted):
                problems.append(f"ClusterLoadAssignment {name!r} is not used by any EDS cluster")
        routes = self.get(ROUTE).entries
        for name in sorted(self.references.rds_names - routes.keys()):
            problems.append(f"listener wants RouteConfiguration {name!r}, which is missing")
        problems.extend(self._virtual_host_problems(previous))
        if problems:
            raise InconsistentSnapshotError(f"snapshot {self.version}: " + "; ".join(problems))
        self.check_size()

    def _virtual_host_problems(self, previous: Snapshot | None) -> list[str]:
        """Every VHDS virtual host must belong to a RouteConfiguration that asks for VHDS
        (else no Envoy ever asks for it); not checked again when shared with ``previous``."""
        hosts = self.types.get(VIRTUAL_HOST)
        if hosts is None:
            return []
        wanted = self.references.vhds_names
        if previous is not None and wanted == previous.references.vhds_names:
            before = previous.types.get(VIRTUAL_HOST)
            if before is not None and hosts.entries.keys() == before.entries.keys():
                return []  # the same names passed the check before
        return [
            f"VirtualHost {name!r} belongs to no RouteConfiguration with vhds"
            for name in hosts.entries
            if namespace_of(name) not in wanted
        ]

    def check_size(self) -> None:
        """Raise SnapshotTooLargeError when one type has too many resources or bytes to send."""
        for type_url, ts in self.types.items():
            if len(ts.entries) > MAX_RESOURCES_PER_TYPE:
                raise SnapshotTooLargeError(
                    f"{len(ts.entries)} {short_name(type_url)} resources for one proxy group;"
                    f" the limit is {MAX_RESOURCES_PER_TYPE}"
                )
            size = ts.size()
            if size > MAX_TYPE_BYTES:
                raise SnapshotTooLargeError(
                    f"{short_name(type_url)} resources of {size} bytes for one proxy group;"
                    f" the limit is {MAX_TYPE_BYTES} (one response carries them all)"
                )

    def summary(self) -> dict[str, int]:
        return {short_name(t): len(ts) for t, ts in self.types.items()}


def _reused_entries(
    items: Mapping[str, T],
    old: TypeSnapshot | None,
    old_items: Mapping[str, T] | None,
    make: Callable[[str, T], Entry],
) -> dict[str, Entry]:
    """Entries in name order; an item (a message, or a PreSerialized's held bytes) that is the
    very object of the previous build keeps its old Entry."""
    if old is None or old_items is None:
        return {name: make(name, items[name]) for name in sorted(items)}
    names = list(items)
    if names == list(old.entries) and names == list(old_items):
        # same names in the same (sorted) order: find the new objects in C
        entries = dict(old.entries)
        for name in compress(names, map(operator.is_not, items.values(), old_items.values())):
            entries[name] = make(name, items[name])
        return entries
    out: dict[str, Entry] = {}
    for name in sorted(items):
        item = items[name]
        entry = old.entries.get(name) if old_items.get(name) is item else None
        out[name] = entry if entry is not None else make(name, item)
    return out


def _references(resources: Resources, previous: Snapshot | None, before: Resources) -> References:
    clusters = resources.get(CLUSTER, _EMPTY_MESSAGES)
    listeners = resources.get(LISTENER, _EMPTY_MESSAGES)
    old = previous.references if previous is not None else References()
    old_clusters = before.get(CLUSTER, _EMPTY_MESSAGES)
    if previous is not None and clusters is old_clusters:
        eds_by_cluster, eds_over_ads = old.eds_by_cluster, old.eds_over_ads
    else:
        eds: dict[str, str] = {}
        over_ads: set[str] = set()
        for name, message in clusters.items():
            if old_clusters.get(name) is message:
                if name in old.eds_by_cluster:
                    eds[name] = old.eds_by_cluster[name]
                if name in old.eds_over_ads:
                    over_ads.add(name)
                continue
            one = {name: message}
            eds.update(_eds_names(one))
            over_ads.update(_eds_over_ads(one))
        eds_by_cluster, eds_over_ads = MappingProxyType(eds), frozenset(over_ads)
    if previous is not None and listeners is before.get(LISTENER):
        rds_names = old.rds_names
    else:
        rds_names = frozenset(_rds_names(listeners))
    routes = resources.get(ROUTE, _EMPTY_MESSAGES)
    if previous is not None and routes is before.get(ROUTE):
        vhds_names = old.vhds_names
    else:
        vhds_names = frozenset(_vhds_names(routes))
    return References(eds_by_cluster, eds_over_ads, rds_names, vhds_names)


def _vhds_names(routes: Mapping[str, Message]) -> Iterator[str]:
    """Route configurations that carry ``vhds``. Spliced ones (``PreSerialized``) are a name and
    virtual hosts only, never ``vhds``: not parsed to find out."""
    if isinstance(routes, PreSerialized):
        return
    for name, message in routes.items():
        if isinstance(message, route_pb2.RouteConfiguration) and message.HasField("vhds"):
            yield name


def _eds_names(clusters: Mapping[str, Message]) -> Iterator[tuple[str, str]]:
    for name, message in clusters.items():
        if not isinstance(message, cluster_pb2.Cluster):
            continue
        if message.WhichOneof("cluster_discovery_type") != "type":
            continue
        if message.type == cluster_pb2.Cluster.EDS:
            yield name, message.eds_cluster_config.service_name or name


def _eds_over_ads(clusters: Mapping[str, Message]) -> Iterator[str]:
    for name, message in clusters.items():
        if isinstance(message, cluster_pb2.Cluster) and message.type == cluster_pb2.Cluster.EDS:
            source = message.eds_cluster_config.eds_config
            if source.HasField("ads") or source.HasField("self"):
                yield name


def _rds_names(listeners: Mapping[str, Message]) -> Iterator[str]:
    for message in listeners.values():
        if not isinstance(message, listener_pb2.Listener):
            continue
        for hcm in _connection_managers(message):
            if hcm.WhichOneof("route_specifier") == "rds":
                yield hcm.rds.route_config_name


def _connection_managers(
    listener: listener_pb2.Listener,
) -> Iterator[hcm_pb2.HttpConnectionManager]:
    chains = [*listener.filter_chains]
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    anys = [f.typed_config for chain in chains for f in chain.filters]
    if listener.HasField("api_listener"):
        anys.append(listener.api_listener.api_listener)
    for any_msg in anys:
        if any_msg.type_url == HTTP_CONNECTION_MANAGER:
            hcm = hcm_pb2.HttpConnectionManager()
            any_msg.Unpack(hcm)
            yield hcm
