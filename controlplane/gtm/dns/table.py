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
from dataclasses import dataclass, field

import dns.name

from controlplane.gtm.dns.ecs import make_opt
from controlplane.gtm.dns.encode import Encoder, WireAnswer, encode_nxdomain, name_wire, wire_name
from controlplane.gtm.dns.records import Records
from controlplane.gtm.dns.resolve import Resolver
from controlplane.gtm.dns.transfer import transfer
from controlplane.gtm.dns.zone import Zone
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.types import ClientGroup, Decision, IPNetwork, SteeringPolicy

_OTHER = 65280  # a private-use type no name holds: resolving it gives the "any other qtype" answer
DEFAULT_UDP_SIZE = 1232  # DNS flag day 2020

Slot = WireAnswer | dict[str, WireAnswer]


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "opt", make_opt(self.udp_size))

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
    ) -> AnswerTable:
        """Precompute every answer; raises GtmError when the inputs are inconsistent."""
        records = Records(zones, decisions, groups, {p.name: p for p in policies})
        resolver = Resolver(records)
        exact, names = _slots(resolver, Encoder())
        allowed = tuple(allow_transfer)
        return cls(
            generation=generation,
            groups=groups,
            exact=exact,
            names=names,
            zones={wire_name(z.origin): encode_nxdomain(resolver.negative_soa(z)) for z in zones},
            transfers={wire_name(z.origin): transfer(records, z) for z in zones} if allowed else {},
            allow_transfer=ClientGroups([ClientGroup("allow", allowed)], default=""),
            udp_size=max(512, udp_size),
        )


def _slots(
    resolver: Resolver, encoder: Encoder
) -> tuple[dict[tuple[bytes, int], Slot], dict[bytes, Slot]]:
    exact: dict[tuple[bytes, int], Slot] = {}
    names: dict[bytes, Slot] = {}
    for name in resolver.records.existing:
        qname = dns.name.from_text(name)
        key = name_wire(qname).lower()
        for qtype in resolver.qtypes(name):
            exact[key, qtype] = _slot(resolver, encoder, name, qname, qtype)
        names[key] = _slot(resolver, encoder, name, qname, _OTHER)
    return exact, names


def _slot(
    resolver: Resolver, encoder: Encoder, name: str, qname: dns.name.Name, qtype: int
) -> Slot:
    """One answer for everyone, unless some client group's answer differs."""
    groups = resolver.records.groups
    first = resolver.resolve(name, qtype, groups.default)
    if not first.touched:
        return encoder.encode(qname, qtype, first)
    per_group = {
        g: encoder.encode(qname, qtype, resolver.resolve(name, qtype, g)) for g in groups.names
    }
    if len({e[:4] for e in per_group.values()}) == 1:
        return next(iter(per_group.values()))._replace(depends_on_client=False)
    return per_group
