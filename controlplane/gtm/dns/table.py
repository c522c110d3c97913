"""The answer table: every answer the GTM can give, precomputed as DNS wire bytes.

Invariants the answer path relies on:

* Keys are owner names in lower-case wire form (``b"\\x03www\\x07example\\x00"``).
* A slot is either one ``WireAnswer`` (same for every client) or a dict client group ->
  ``WireAnswer``; what a WireAnswer holds is described in ``encode``.
* A table is never modified after ``build``: the server swaps whole tables.

Building is a pipeline, one module per job: ``records`` assembles the zones and synthesizes the
steered names' records, ``resolve`` answers (name, type, group) at build time (CNAME chains,
glue, NXDOMAIN/NODATA), ``encode`` turns each distinct resolution into wire bytes once, and
``transfer`` chunks zone transfers, built only when some network may transfer. RRsets are
cached by content and wire answers by (name, type, sections), so client groups that share an
answer share its bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import dns.name

from controlplane.gtm.dns.ecs import make_opt
from controlplane.gtm.dns.encode import Encoder, WireAnswer, encode_nxdomain, wire_name
from controlplane.gtm.dns.records import Records, steered_owners
from controlplane.gtm.dns.resolve import Resolution, Resolver
from controlplane.gtm.dns.transfer import transfer
from controlplane.gtm.dns.zone import Zone
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.types import ClientGroup, Decision, IPNetwork, SteeringPolicy

_OTHER = 65280  # a private-use type no name holds: resolving it gives the "any other qtype" answer
DEFAULT_UDP_SIZE = 1232  # DNS flag day 2020

Slot = WireAnswer | dict[str, WireAnswer]
SlotKey = tuple[bytes, int]  # (owner, qtype) in ``exact``; (owner, _NAMES) in ``names``
_NAMES = -1
_SOA = 6


@dataclass(frozen=True, slots=True)
class BuildParts:
    """What a build keeps so that the next one can redo only the names whose decisions changed.

    Never pickled with the table (DNS workers do not build). ``soa_slots``: the slots holding
    answers that end with a zone's SOA record (NODATA and SOA answers), whose serial the next
    build patches in place: (origin, None) for a single answer, (origin, groups) for the groups
    of a per-group slot whose answer ends with it.
    """

    records: Records
    decisions: dict[str, dict[str, Decision]]  # steered name -> group -> Decision
    policies: dict[str, SteeringPolicy]
    zones: tuple[Zone, ...]  # serial 0: compared across builds
    readers: dict[str, frozenset[str]]  # owner -> existing names whose answers read its records
    soa_slots: dict[SlotKey, tuple[str, frozenset[str] | None]]
    keys: dict[str, bytes]  # existing name -> its key


@dataclass(frozen=True, slots=True)
class AnswerTable:
    generation: int
    groups: ClientGroups
    exact: dict[tuple[bytes, int], Slot]
    names: dict[bytes, Slot]  # any other qtype at an existing name: NODATA or CNAME
    zones: dict[bytes, WireAnswer]  # NXDOMAIN per zone origin
    transfers: dict[bytes, tuple[WireAnswer, ...]]  # AXFR messages per zone origin
    allow_transfer: ClientGroups = field(default_factory=lambda: ClientGroups(default=""))
    udp_size: int = DEFAULT_UDP_SIZE
    opt: bytes = field(init=False)  # our OPT RR for EDNS answers without options
    #: ECS option data -> (client group, OPT echoing it with the group's scope, OPT with scope 0),
    #: filled by the answer path (resolvers repeat their subnets); bounded there
    ecs_memo: dict[bytes, tuple[str, bytes, bytes]] = field(
        init=False, default_factory=dict, compare=False, repr=False
    )
    #: what the next incremental build starts from; None once pickled
    parts: BuildParts | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "opt", make_opt(self.udp_size))

    def __getstate__(self) -> list[object]:
        return [None if f.name == "parts" else getattr(self, f.name) for f in fields(self)]

    def __setstate__(self, state: list[object]) -> None:
        for f, value in zip(fields(self), state, strict=True):
            object.__setattr__(self, f.name, value)

    @property
    def size(self) -> int:
        return sum(
            1 if isinstance(s, WireAnswer) else len(s)
            for s in (*self.exact.values(), *self.names.values())
        )

    @classmethod
    def build(
        cls,
        zones: Sequence[Zone],
        decisions: Iterable[Decision],
        groups: ClientGroups,
        policies: Iterable[SteeringPolicy] = (),
        *,
        generation: int = 0,
        allow_transfer: Iterable[IPNetwork] = (),
        udp_size: int = DEFAULT_UDP_SIZE,
        previous: AnswerTable | None = None,
    ) -> AnswerTable:
        """Precompute every answer; raises GtmError when the inputs are inconsistent.

        With ``previous`` (a table built by this function, in this process), only the steered
        names whose decisions changed are built again, when nothing else changed but the zones'
        SOA serial; otherwise (policies, zones, groups, transfers, sizes) everything is."""
        by_name: dict[str, dict[str, Decision]] = {}
        for d in decisions:
            by_name.setdefault(d.name, {})[d.group] = d
        by_policy = {p.name: p for p in policies}
        allowed = tuple(allow_transfer)
        udp_size = max(512, udp_size)
        if previous is not None and not allowed and not previous.transfers:
            table = _incremental(previous, zones, by_name, groups, by_policy, generation, udp_size)
            if table is not None:
                return table
        records = Records(zones, _flat(by_name), groups, by_policy)
        resolver = Resolver(records)
        keys = {name: wire_name(name) for name in records.existing}
        soa_slots: dict[SlotKey, tuple[str, frozenset[str] | None]] = {}
        exact, names = _slots(resolver, Encoder(), records.existing, keys, soa_slots)
        return cls(
            generation=generation,
            groups=groups,
            exact=exact,
            names=names,
            zones={wire_name(z.origin): encode_nxdomain(resolver.negative_soa(z)) for z in zones},
            transfers={wire_name(z.origin): transfer(records, z) for z in zones} if allowed else {},
            allow_transfer=ClientGroups([ClientGroup("allow", allowed)], default=""),
            udp_size=udp_size,
            parts=BuildParts(
                records=records,
                decisions=by_name,
                policies=by_policy,
                zones=_unserialed(zones),
                readers=_readers(resolver),
                soa_slots=soa_slots,
                keys=keys,
            ),
        )


def _flat(by_name: dict[str, dict[str, Decision]]) -> list[Decision]:
    return [d for per_group in by_name.values() for d in per_group.values()]


def _unserialed(zones: Sequence[Zone]) -> tuple[Zone, ...]:
    return tuple(replace(z, serial=0) for z in zones)


def _incremental(
    previous: AnswerTable,
    zones: Sequence[Zone],
    by_name: dict[str, dict[str, Decision]],
    groups: ClientGroups,
    policies: dict[str, SteeringPolicy],
    generation: int,
    udp_size: int,
) -> AnswerTable | None:
    """``previous`` with the changed names built again; None when a full build is needed."""
    parts = previous.parts
    if (
        parts is None
        or groups is not previous.groups
        or udp_size != previous.udp_size
        or by_name.keys() != parts.decisions.keys()
        or policies.keys() != parts.policies.keys()
        or any(p is not parts.policies[n] and p != parts.policies[n] for n, p in policies.items())
        or _unserialed(zones) != parts.zones
    ):
        return None
    changed = {n: d for n, d in by_name.items() if d != parts.decisions[n]}
    records = Records.updated(parts.records, zones, changed, policies)
    resolver = Resolver(records)
    encoder = Encoder()
    exact = dict(previous.exact)
    names = dict(previous.names)
    soa_slots = dict(parts.soa_slots)
    redo: set[str] = set()
    fresh: set[SlotKey] = set()
    for name in changed:
        for owner in steered_owners(name):
            redo |= parts.readers.get(owner, frozenset())
    for name in redo:
        key = parts.keys[name]
        for qtype in resolver.qtypes(name):
            soa_slots.pop((key, qtype), None)
            fresh.add((key, qtype))
        soa_slots.pop((key, _NAMES), None)
        fresh.add((key, _NAMES))
        _name_slots(resolver, encoder, name, key, exact, names, soa_slots)
    serials = {z.origin: z.serial.to_bytes(4) for z in zones}
    patched: dict[int, WireAnswer] = {}
    for (key, qtype), (origin, in_groups) in soa_slots.items():
        if (key, qtype) in fresh:
            continue
        target = names if qtype == _NAMES else exact
        slot_key: Any = key if qtype == _NAMES else (key, qtype)
        slot = target[slot_key]
        serial = serials[origin]
        if isinstance(slot, WireAnswer):
            target[slot_key] = _patched(slot, serial, patched)
        else:
            assert in_groups is not None
            target[slot_key] = {
                g: _patched(e, serial, patched) if g in in_groups else e for g, e in slot.items()
            }
    table = AnswerTable(
        generation=generation,
        groups=groups,
        exact=exact,
        names=names,
        zones={wire_name(z.origin): encode_nxdomain(resolver.negative_soa(z)) for z in zones},
        transfers={},
        allow_transfer=previous.allow_transfer,
        udp_size=udp_size,
        parts=replace(
            parts, records=records, decisions=by_name, policies=policies, soa_slots=soa_slots
        ),
    )
    table.ecs_memo.update(previous.ecs_memo)  # ECS views follow the groups and the size only
    return table


def _patched(entry: WireAnswer, serial: bytes, done: dict[int, WireAnswer]) -> WireAnswer:
    """``entry`` (ending with a zone's SOA record) with ``serial`` as the SOA serial."""
    new = done.get(id(entry))
    if new is None:
        body = entry.body
        new = done[id(entry)] = entry._replace(body=body[:-20] + serial + body[-16:])
    return new


def _readers(resolver: Resolver) -> dict[str, frozenset[str]]:
    """owner -> the existing names whose answers read its records (itself, CNAMEs to it)."""
    readers: dict[str, set[str]] = {}
    for name in resolver.records.existing:
        for owner in resolver.chain(name):
            readers.setdefault(owner, set()).add(name)
    return {owner: frozenset(names) for owner, names in readers.items()}


def _slots(
    resolver: Resolver,
    encoder: Encoder,
    existing: Iterable[str],
    keys: dict[str, bytes],
    soa_slots: dict[SlotKey, tuple[str, frozenset[str] | None]],
) -> tuple[dict[tuple[bytes, int], Slot], dict[bytes, Slot]]:
    exact: dict[tuple[bytes, int], Slot] = {}
    names: dict[bytes, Slot] = {}
    for name in existing:
        _name_slots(resolver, encoder, name, keys[name], exact, names, soa_slots)
    return exact, names


def _name_slots(
    resolver: Resolver,
    encoder: Encoder,
    name: str,
    key: bytes,
    exact: dict[tuple[bytes, int], Slot],
    names: dict[bytes, Slot],
    soa_slots: dict[SlotKey, tuple[str, frozenset[str] | None]],
) -> None:
    qname = dns.name.from_text(name)
    for qtype in resolver.qtypes(name):
        exact[key, qtype] = _slot(resolver, encoder, name, qname, qtype, (key, qtype), soa_slots)
    names[key] = _slot(resolver, encoder, name, qname, _OTHER, (key, _NAMES), soa_slots)


def _slot(
    resolver: Resolver,
    encoder: Encoder,
    name: str,
    qname: dns.name.Name,
    qtype: int,
    slot_key: SlotKey,
    soa_slots: dict[SlotKey, tuple[str, frozenset[str] | None]],
) -> Slot:
    """One answer for everyone, unless some client group's answer differs."""
    groups = resolver.records.groups
    first = resolver.resolve(name, qtype, groups.default)
    if not first.touched:
        origin = _soa_last(first)
        if origin is not None:
            soa_slots[slot_key] = (origin, None)
        return encoder.encode(qname, qtype, first)
    resolved = {g: resolver.resolve(name, qtype, g) for g in groups.names}
    per_group = {g: encoder.encode(qname, qtype, r) for g, r in resolved.items()}
    ending = {g: o for g, r in resolved.items() if (o := _soa_last(r)) is not None}
    if len({e[:4] for e in per_group.values()}) == 1:
        if ending:
            soa_slots[slot_key] = (next(iter(ending.values())), None)
        return next(iter(per_group.values()))._replace(depends_on_client=False)
    if ending:
        soa_slots[slot_key] = (next(iter(ending.values())), frozenset(ending))
    return per_group


def _soa_last(result: Resolution) -> str | None:
    """The zone origin when the encoded answer ends with that zone's SOA record, else None."""
    if result.additional:
        return None
    last = result.authority or result.answer
    if last and last[-1].rdtype == _SOA:
        return str(last[-1].name).rstrip(".").lower()
    return None
