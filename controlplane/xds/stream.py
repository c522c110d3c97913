"""The xDS protocol state machine of one stream (SotW or Delta), with no I/O in it.

The grpc servicer feeds it requests (``on_request``) and snapshots (``on_snapshot``) and writes
the responses it returns. Invariants, per type on the stream:

- at most one response is in flight; a request carrying a nonce other than the last one sent is
  stale. A nonce on a type the stream never answered is from a previous connection: the request
  is a (re)subscription. SotW ignores it whole (its names arrive again with the ACK); Delta still applies its
  subscription changes, which are not tied to nonces;
- ACK: the client now holds what we sent. NACK (``error_detail`` set): it holds what it held
  before; the rejected ``(name, version)`` pairs (those it did not already hold at that
  version) are remembered, while still wanted, and never sent again; the next response goes out
  only when content changes;
- ADS ordering (make-before-break): types go in ``PUSH_ORDER`` (SDS, CDS, EDS, LDS, RDS,
  VHDS); a type waits while an earlier type has a response in flight or still to send, except
  that EDS does not wait for CDS, RDS for LDS, nor VHDS for RDS (Envoy holds a CDS ACK until
  the new clusters have their endpoints). So LDS/RDS leave only once the clusters they may name
  are ACKed, i.e. warm; and after a CDS ACK that brought new EDS clusters, LDS/RDS also wait for
  Envoy's EDS request for them; EDS that only changes endpoints of clusters the client holds
  does not hold the later types (nothing to warm). Removals go last: while any type still has
  something to send or in flight, SotW
  responses keep the resources the client holds and Delta withholds ``removed_resources``;
- a Cluster sent again forces its ClusterLoadAssignment to follow, even if unchanged: Envoy
  keeps an updated EDS cluster warming until it receives its endpoints;
- legacy wildcard (first LDS/CDS request with no names), explicit ``*``, subscribe,
  unsubscribe; a resubscribed resource is sent again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.errors import XdsRequestError
from controlplane.xds.events import Acked, Event, InSync, Nacked, Response, StaleIgnored, Step
from controlplane.xds.resources import (
    CLUSTER,
    DELTA_ONLY_TYPES,
    ENDPOINT,
    LISTENER,
    NAMESPACED_TYPES,
    PUSH_ORDER,
    ROUTE,
    VIRTUAL_HOST,
    WILDCARD_TYPES,
    namespace_of,
)
from controlplane.xds.snapshot import Entry, Snapshot, version_of

WILDCARD = "*"
_NONE: frozenset[str] = frozenset()
_EMPTY_VERSION = version_of({})  # the version of a type the snapshot does not have

# Envoy warms a new cluster until its endpoints arrive, and holds the CDS ACK meanwhile (likewise
# a listener waits for its routes): EDS must not wait for the CDS ACK, nor RDS for the LDS ACK.
# VHDS likewise waits for nothing but the RouteConfiguration it fills.
_PARENT = {ENDPOINT: CLUSTER, ROUTE: LISTENER, VIRTUAL_HOST: ROUTE}


@dataclass(slots=True)
class _InFlight:
    nonce: str
    version_info: str
    entries: Mapping[str, Entry]
    removed: tuple[str, ...]
    adds: bool = True  # carries a name the client did not hold when it was sent


@dataclass(slots=True)
class _TypeState:
    type_url: str
    watched: bool = False
    wildcard: bool = False
    legacy_wildcard: bool = False
    names: frozenset[str] = frozenset()
    # What the client holds. Often the snapshot's own read-only mapping, shared by every stream
    # of the group (memory per stream stays small); copied before the first change (_own).
    acked: Mapping[str, Entry] = field(default_factory=dict)
    nacked: dict[str, str] = field(default_factory=dict)  # name -> rejected version
    # small and rarely non-empty: frozensets replaced whole, the shared empty one by default
    # (an empty set per field and type is ~0.9 KiB per stream)
    forced: frozenset[str] = frozenset()
    awaiting: frozenset[str] = frozenset()  # EDS names of new clusters, not yet asked for
    in_flight: _InFlight | None = None
    last_nonce: str = ""
    must_respond: bool = False
    acked_version: str = ""
    settled_at: str | None = None  # type version at which nothing was left to do


@dataclass(slots=True)
class _Plan:
    upserts: list[Entry]
    removals: list[str]

    def pending(self, st: _TypeState) -> bool:
        return bool(self.upserts or st.awaiting) or st.must_respond or st.in_flight is not None


_Changes = tuple[list[Entry], list[str]]  # (upserts, removed names); never mutated

MAX_NAMES_PER_TYPE = 50_000  # resource names one stream may subscribe to, per type
MAX_NAME_CHARS = 1024  # one resource name
MAX_INTERNED_NAMES = 1_000_000  # names held by the shared copies, all streams together


class _NameSets:
    """Streams of one group subscribe to the same names: one shared copy of each set, counted
    by the streams that hold it and dropped when the last one lets go (a closed stream keeps
    nothing). Past ``MAX_INTERNED_NAMES`` a set is simply not shared."""

    def __init__(self) -> None:
        self._sets: dict[frozenset[str], list[Any]] = {}  # set -> [shared copy, holders]
        self.names = 0

    def acquire(self, names: frozenset[str]) -> frozenset[str]:
        entry = self._sets.get(names)
        if entry is not None:
            entry[1] += 1
            shared: frozenset[str] = entry[0]
            return shared
        if self.names + len(names) <= MAX_INTERNED_NAMES:
            self._sets[names] = [names, 1]
            self.names += len(names)
        return names

    def release(self, names: frozenset[str]) -> None:
        entry = self._sets.get(names)
        if entry is None or entry[0] is not names:
            return  # never shared
        entry[1] -= 1
        if entry[1] == 0:
            del self._sets[names]
            self.names -= len(names)

    def __len__(self) -> int:
        return len(self._sets)


NAME_SETS = _NameSets()


def _check_names(type_url: str, names: Iterable[str], count: int) -> None:
    if count > MAX_NAMES_PER_TYPE:
        raise XdsRequestError(
            f"{count} resource names for {type_url}; the limit is {MAX_NAMES_PER_TYPE} per stream",
            status="RESOURCE_EXHAUSTED",
        )
    for name in names:
        if len(name) > MAX_NAME_CHARS:
            raise XdsRequestError(
                f"resource name of {len(name)} characters for {type_url};"
                f" the limit is {MAX_NAME_CHARS}"
            )


def _same_subscription(st: _TypeState, requested: frozenset[str]) -> bool:
    """A SotW request for ``requested`` would leave ``st``'s subscription as it is: the same
    names, and no ``*`` (given or taken away)."""
    if st.wildcard != st.legacy_wildcard:  # an explicit "*" that this request may drop
        return False
    # st.names never holds "*"; a legacy wildcard holds no names, so equal names keep it too
    return requested == st.names


def _own(st: _TypeState) -> dict[str, Entry]:
    if not isinstance(st.acked, dict):
        st.acked = dict(st.acked)
    return st.acked


def _warm_endpoints_only(st: _TypeState, plan: _Plan | None) -> bool:
    """EDS work that only changes the endpoints of clusters the client already holds: LDS and
    RDS need not wait for it (make-before-break is about clusters that are not warm yet; an
    Envoy keeps serving a held cluster while its new endpoints arrive)."""
    if st.awaiting or st.forced or st.must_respond:
        return False
    if st.in_flight is not None and st.in_flight.adds:
        return False
    held = st.acked
    return plan is None or all(e.name in held for e in plan.upserts)


def _placeholder(name: str, version: str) -> Entry:
    return Entry(name=name, version=version, any_bytes=b"", sotw_bytes=b"", delta_bytes=b"")


MAX_CHANGES = 256  # (held, desired) pairs whose difference is remembered, all streams together
_CHANGES: dict[tuple[int, int], tuple[Mapping[str, Entry], Mapping[str, Entry], _Changes]] = {}


def _changes(held: Mapping[str, Entry], desired: Mapping[str, Entry]) -> _Changes:
    """(entries of ``desired`` the client does not hold at that version, held names no longer
    desired). Streams of a group hold the same read-only mappings and move to the same new ones,
    so between two read-only mappings the difference is worked out once for all of them (a
    stream's own dict may still change: never remembered)."""
    shared = type(held) is MappingProxyType and type(desired) is MappingProxyType
    if shared:
        found = _CHANGES.get((id(held), id(desired)))
        if found is not None and found[0] is held and found[1] is desired:
            return found[2]
    upserts: list[Entry] = []
    for name, e in desired.items():
        had = held.get(name)
        if had is None or had.version != e.version:
            upserts.append(e)
    result = (upserts, sorted(name for name in held if name not in desired))
    if shared:
        if len(_CHANGES) >= MAX_CHANGES:
            _CHANGES.clear()
        _CHANGES[(id(held), id(desired))] = (held, desired, result)
    return result


MAX_TUPLES = 256  # read-only mappings whose names/entries tuples are remembered
_TUPLES: dict[int, tuple[Mapping[str, Entry], tuple[str, ...], tuple[Entry, ...]]] = {}


def _tuples(entries: Mapping[str, Entry]) -> tuple[tuple[str, ...], tuple[Entry, ...]]:
    """(names, entries) of ``entries`` as tuples. Every stream of a group is sent and ACKs the
    same read-only mappings, so for those the tuples are made once, not once per stream."""
    shared = type(entries) is MappingProxyType
    if shared:
        found = _TUPLES.get(id(entries))
        if found is not None and found[0] is entries:
            return found[1], found[2]
    names, values = tuple(entries), tuple(entries.values())
    if shared:
        if len(_TUPLES) >= MAX_TUPLES:
            _TUPLES.clear()
        _TUPLES[id(entries)] = (entries, names, values)
    return names, values


class XdsStream:
    """Bookkeeping of one ADS or per-type stream. ``delta`` selects the incremental variant."""

    def __init__(self, *, delta: bool, type_url: str | None = None) -> None:
        self.delta = delta
        self.fixed_type = type_url  # per-type services (CDS, EDS, ...) have one type, may omit it
        self.node: base_pb2.Node | None = None
        self.snapshot: Snapshot | None = None
        self._types: dict[str, _TypeState] = {}
        self._counter = 0
        self._events: list[Event] = []

    # -- inputs -------------------------------------------------------------------------

    def on_snapshot(self, snapshot: Snapshot) -> Step:
        self.snapshot = snapshot
        responses = tuple(self._pump())
        return Step(responses, self._drain())

    def on_request(
        self, request: discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest
    ) -> Step:
        """Apply a DiscoveryRequest (SotW) or DeltaDiscoveryRequest (Delta)."""
        if self.node is None and request.HasField("node"):
            self.node = request.node
        if self.fixed_type is not None and request.type_url not in ("", self.fixed_type):
            return Step((), ())  # a per-type service serves its own type only
        type_url = request.type_url or self.fixed_type or ""
        st = self._types.get(type_url)
        if st is None:
            if type_url not in PUSH_ORDER or (not self.delta and type_url in DELTA_ONLY_TYPES):
                # a type Ubiq does not serve (RTDS, ECDS, ..., VHDS over SotW): no state, no
                # answer, so a client cannot grow a stream's memory with made-up type URLs
                return Step((), ())
            st = self._types[type_url] = _TypeState(type_url)
        events: list[Event] = []
        nonce: str = request.response_nonce
        # A nonce on a type this stream never answered comes from an earlier connection (the
        # client reconnected): not stale, just a (re)subscription that gets a full response.
        if nonce and st.last_nonce and nonce != st.last_nonce:
            events.append(StaleIgnored(type_url, nonce))
            if not self.delta:
                return Step((), tuple(events))
        elif nonce and st.in_flight is not None:
            events.append(self._settle(st, request))
        if self.delta:
            self._delta_subscriptions(st, request)
        else:
            self._sotw_subscriptions(st, request.resource_names)
        st.awaiting = _NONE  # the client has stated its subscription after the clusters came
        st.watched = True
        st.settled_at = None
        responses = tuple(self._pump())
        return Step(responses, tuple(events) + self._drain())

    def _drain(self) -> tuple[Event, ...]:
        events, self._events = tuple(self._events), []
        return events

    def tracked_types(self) -> list[str]:
        return [t for t, st in self._types.items() if st.watched]

    def holds(self, snapshot: Snapshot, type_urls: Iterable[str] = (CLUSTER, ENDPOINT)) -> bool:
        """Whether the client holds, for each of ``type_urls`` it watches, every resource of
        ``snapshot`` it subscribes to (ACKed, or rejected at that version), with nothing in
        flight or awaited. A VHDS stream waits for this on the node's ADS stream, so a virtual
        host never reaches Envoy before the clusters it routes to (make-before-break across the
        two streams)."""
        current = self.snapshot
        if current is None or current.version != snapshot.version:
            return False
        for type_url in type_urls:
            st = self._types.get(type_url)
            if st is None:
                continue
            if st.in_flight is not None or st.awaiting:
                return False
            if not st.watched:
                continue
            ts = current.get(type_url)
            if st.settled_at == ts.version:
                continue  # nothing was left to send at this version (the usual case)
            desired = ts.entries if st.wildcard else ts.subset(st.names)
            for name, e in desired.items():
                held = st.acked.get(name)
                if (held is None or held.version != e.version) and st.nacked.get(name) != e.version:
                    return False
        return True

    def acked_version(self, type_url: str) -> str:
        st = self._types.get(type_url)
        return st.acked_version if st else ""

    # -- subscriptions --------------------------------------------------------------------

    def _sotw_subscriptions(self, st: _TypeState, requested: Sequence[str]) -> None:
        count = len(requested)
        if count > MAX_NAMES_PER_TYPE:
            _check_names(st.type_url, (), count)
        if st.watched and _same_subscription(st, frozenset(requested)):
            return  # an ACK naming what the stream already holds: the usual case, nothing to do
        _check_names(st.type_url, requested, count)
        names = set(requested)
        first = not st.watched
        if first:
            st.must_respond = True
            st.legacy_wildcard = not names and st.type_url in WILDCARD_TYPES
        elif names:
            st.legacy_wildcard = False
        st.wildcard = st.legacy_wildcard or WILDCARD in names
        names.discard(WILDCARD)
        self._forget(st, st.names - names)
        self._set_names(st, frozenset(names))

    def _delta_subscriptions(
        self, st: _TypeState, request: discovery_pb2.DeltaDiscoveryRequest
    ) -> None:
        for listed in (
            request.resource_names_subscribe,
            request.resource_names_unsubscribe,
            request.initial_resource_versions,
        ):
            _check_names(st.type_url, listed, len(listed))
        subscribe = set(request.resource_names_subscribe)
        unsubscribe = set(request.resource_names_unsubscribe)
        if not st.watched:
            initial: Mapping[str, str] = request.initial_resource_versions
            st.acked = {name: _placeholder(name, v) for name, v in sorted(initial.items())}
            st.must_respond = not initial
            if not subscribe and st.type_url in WILDCARD_TYPES:
                st.legacy_wildcard = st.wildcard = True
        if WILDCARD in subscribe:
            st.wildcard = True
        if WILDCARD in unsubscribe:
            st.wildcard = st.legacy_wildcard = False
        subscribe.discard(WILDCARD)
        unsubscribe.discard(WILDCARD)
        names = (st.names | subscribe) - unsubscribe
        _check_names(st.type_url, (), len(names))
        self._set_names(st, frozenset(names))
        if WILDCARD in request.resource_names_unsubscribe:
            self._forget(st, set(st.acked) - st.names)  # the client drops them itself
        elif not st.wildcard:
            if st.type_url in NAMESPACED_TYPES and unsubscribe:
                unsubscribe |= {n for n in st.acked if namespace_of(n) in unsubscribe}
            self._forget(st, unsubscribe)

    @staticmethod
    def _set_names(st: _TypeState, names: frozenset[str]) -> None:
        if names is st.names or names == st.names:
            return
        NAME_SETS.release(st.names)
        st.names = NAME_SETS.acquire(names)

    def close(self) -> None:
        """The stream ended: let go of the shared name sets (everything else dies with it)."""
        for st in self._types.values():
            NAME_SETS.release(st.names)
            st.names = frozenset()

    @staticmethod
    def _forget(st: _TypeState, names: Iterable[str]) -> None:
        """The client dropped these: a later resubscribe must send them again."""
        for name in names:
            if name in st.acked:
                del _own(st)[name]
            st.nacked.pop(name, None)

    # -- ACK / NACK -----------------------------------------------------------------------

    def _settle(
        self,
        st: _TypeState,
        request: discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest,
    ) -> Event:
        flight = st.in_flight
        assert flight is not None
        st.in_flight = None
        names = _tuples(flight.entries)[0]
        if request.HasField("error_detail"):
            for name, entry in flight.entries.items():
                had = st.acked.get(name)
                if had is None or had.version != entry.version:
                    # a name it holds at this version was not what it rejected
                    st.nacked[name] = entry.version
            detail = request.error_detail
            return Nacked(
                st.type_url, flight.version_info, flight.nonce, names, detail.message, detail.code
            )
        whole = not self.delta and st.type_url in WILDCARD_TYPES  # SotW: the whole set
        if (
            whole
            or st.acked.keys() <= flight.entries.keys()  # in C: the usual case, all re-sent
            or all(n in flight.entries or n in flight.removed for n in st.acked)
        ):
            st.acked = flight.entries
        else:
            held = _own(st)
            held.update(flight.entries)
            for name in flight.removed:
                held.pop(name, None)
        if st.nacked:
            for name in flight.entries:
                st.nacked.pop(name, None)
        st.acked_version = flight.version_info
        if st.type_url == CLUSTER:
            self._await_endpoints(flight.entries)
        return Acked(st.type_url, flight.version_info, flight.nonce, names)

    # -- deciding what to send ------------------------------------------------------------

    def _plan(self, st: _TypeState, desired: Mapping[str, Entry]) -> _Plan:
        if st.nacked:  # only what is still wanted can be blocked: the map cannot grow
            for name in [n for n in st.nacked if n not in desired]:
                del st.nacked[name]
        if st.forced:
            st.forced = st.forced.intersection(desired)
        if not st.nacked and not st.forced:
            upserts, gone = _changes(st.acked, desired)
        else:
            upserts = []
            for name, e in desired.items():
                held = st.acked.get(name)
                changed = held is None or held.version != e.version
                if name in st.forced or (changed and st.nacked.get(name) != e.version):
                    upserts.append(e)
            gone = sorted(name for name in st.acked if name not in desired)
        if not self.delta and st.type_url not in WILDCARD_TYPES:
            for name in gone:  # SotW cannot remove these; the client drops them itself
                del _own(st)[name]
            gone = []
        return _Plan(upserts, gone)

    def _ordered(self) -> list[_TypeState]:
        """Watched types in push order (``on_request`` keeps no state for other types)."""
        found = self._types
        out = []
        for t in PUSH_ORDER:
            st = found.get(t)
            if st is not None and (st.watched or st.awaiting):
                out.append(st)
        return out

    def _pump(self) -> list[Response]:
        snapshot = self.snapshot
        if snapshot is None:
            return []
        states = self._ordered()
        types = snapshot.types
        # per state: None when settled at its type's version with nothing in flight
        work: list[tuple[str, Mapping[str, Entry], _Plan] | None] = []
        hold_removals = False
        for st in states:
            ts = types.get(st.type_url)
            version = ts.version if ts is not None else _EMPTY_VERSION
            if st.settled_at == version and st.in_flight is None:
                work.append(None)
                continue
            if ts is None:
                ts = snapshot.get(st.type_url)
            if st.wildcard:
                desired = ts.entries
            elif st.type_url in NAMESPACED_TYPES:
                desired = ts.in_namespaces(st.names)
            else:
                desired = ts.subset(st.names)
            planned = self._plan(st, desired)
            work.append((version, desired, planned))
            hold_removals = hold_removals or planned.pending(st)
        out: list[Response] = []
        waiting: set[str] = set()  # types with work in flight or unsent: later types wait
        for st, todo in zip(states, work, strict=True):
            plan = None
            if todo is not None:
                version, desired, plan = todo
                if st.type_url == ENDPOINT and st.forced:
                    plan = self._plan(st, desired)  # CDS was just sent in this pump
                # blocked while a type other than its parent (_PARENT) is waiting
                blocked = len(waiting) > (1 if _PARENT.get(st.type_url) in waiting else 0)
                if st.in_flight is None and not blocked:
                    removals = [] if hold_removals else plan.removals
                    if plan.upserts or removals or st.must_respond:
                        out.append(self._respond(st, desired, plan.upserts, removals, snapshot))
                    elif not plan.removals and not st.awaiting:
                        self._settled(st, desired, version)
            busy = (
                st.in_flight is not None or st.awaiting or (plan is not None and plan.pending(st))
            )
            if busy and (st.type_url != ENDPOINT or not _warm_endpoints_only(st, plan)):
                waiting.add(st.type_url)
        return out

    def _settled(self, st: _TypeState, desired: Mapping[str, Entry], version: str) -> None:
        st.settled_at = version
        blocked = bool(st.nacked) and any(
            st.nacked.get(name) == e.version for name, e in desired.items()
        )
        if not blocked and st.acked_version != version:
            st.acked_version = version
            self._events.append(InSync(st.type_url, version))

    def _respond(
        self,
        st: _TypeState,
        desired: Mapping[str, Entry],
        upserts: list[Entry],
        removals: list[str],
        snapshot: Snapshot,
    ) -> Response:
        self._counter += 1
        nonce = str(self._counter)
        sent: Mapping[str, Entry]
        if self.delta:
            sent = desired if len(upserts) == len(desired) else {e.name: e for e in upserts}
            version_info = snapshot.type_version(st.type_url)
            response = Response(
                st.type_url, nonce, version_info, _tuples(sent)[1], tuple(removals), True
            )
        else:
            kept: dict[str, Entry] = {}
            if st.type_url in WILDCARD_TYPES and not removals:
                # removals last: keep what the client holds until the rest has moved
                kept = {name: e for name, e in st.acked.items() if name not in desired}
            if kept:
                merged = {**desired, **kept}
                sent = {name: merged[name] for name in sorted(merged)}
            else:
                sent = desired
            whole = snapshot.get(st.type_url)
            joined = None
            if sent is whole.entries:
                version_info = snapshot.type_version(st.type_url)
                joined = whole.sotw_resources()
            else:
                version_info = version_of({name: e.version for name, e in sent.items()})
            response = Response(st.type_url, nonce, version_info, _tuples(sent)[1], joined=joined)
        held = st.acked
        adds = any(e.name not in held for e in upserts)
        st.in_flight = _InFlight(nonce, version_info, sent, tuple(removals), adds)
        st.last_nonce = nonce
        st.must_respond = False
        st.forced = _NONE
        if st.type_url == CLUSTER:
            self._force_endpoints(upserts, snapshot)
        return response

    def _force_endpoints(self, clusters: list[Entry], snapshot: Snapshot) -> None:
        eds = self._types.get(ENDPOINT)
        if eds is None:
            return
        by_cluster = snapshot.references.eds_by_cluster
        more = {by_cluster[e.name] for e in clusters if e.name in by_cluster}
        if more:
            eds.forced = eds.forced.union(more)
        eds.settled_at = None

    def _await_endpoints(self, clusters: Mapping[str, Entry]) -> None:
        """After a CDS ACK Envoy asks for the endpoints of its new EDS clusters; LDS and RDS,
        which may route to them, wait for that request (make-before-break)."""
        if self.snapshot is None or self.fixed_type is not None:
            return
        refs = self.snapshot.references
        wanted = {refs.eds_by_cluster[n] for n in clusters if n in refs.eds_over_ads}
        eds = self._types.get(ENDPOINT)
        if eds is None:
            eds = self._types[ENDPOINT] = _TypeState(ENDPOINT)
        if not eds.wildcard:
            eds.awaiting = frozenset(wanted - eds.names) if wanted else _NONE
            eds.settled_at = None
