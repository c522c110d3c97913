"""The answer table: every answer the GTM can give, precomputed as DNS wire bytes.

Invariants the answer path relies on:

* Keys are owner names in lower-case wire form (``b"\\x03www\\x07example\\x00"``). An entry's
  ``body`` is everything after the question; its compression pointers may point into the
  question name at offset 12, which is valid for any query whose question name is the same name
  in any letter case (same label lengths), so the answer path copies the question from the query.
* NXDOMAIN entries (per zone) are position independent (no compression at all): the question
  name varies.
* An entry holds counts without OPT; the answer path appends OPT and bumps ARCOUNT for EDNS.
* A slot is either one ``WireAnswer`` (same for every client) or a dict client group -> ``WireAnswer``.
* A table is never modified after ``build``: the server swaps whole tables.

Steered names get, besides A/AAAA: ``_http._tcp.NAME`` SRV (one record per answered target, in
answer order: priority = position, weight and port from the target, target host
``<cluster>.NAME`` with its own A/AAAA) and ``_ubiq.NAME`` TXT saying which group, regions and
reasons produced the answer.

Zone transfers are built only when some network may transfer. A transfer is a tuple of entries,
one per DNS message (RFC 5936 2.2): the first starts with the zone's SOA, the last ends with it,
and each fits one 64 KiB TCP message with room for an OPT record.
Building is cached: RRsets by content, encoded entries by (name, type, sections), so client
groups that share an answer share its bytes.
"""

from __future__ import annotations

import functools
import io
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from controlplane.errors import GtmError
from controlplane.gtm.dns.ecs import make_opt
from controlplane.gtm.dns.rcodes import NOERROR, NXDOMAIN, SERVFAIL
from controlplane.gtm.dns.zone import Zone, parse_rdata, zone_for
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.types import ClientGroup, Decision, IPNetwork, SteeringPolicy, Target

IN = dns.rdataclass.IN
A, NS, CNAME, SOA = dns.rdatatype.A, dns.rdatatype.NS, dns.rdatatype.CNAME, dns.rdatatype.SOA
TXT, AAAA, SRV = dns.rdatatype.TXT, dns.rdatatype.AAAA, dns.rdatatype.SRV
_OTHER = 65280  # a private-use type no name holds: resolving it gives the "any other qtype" answer
_MAX_CHAIN = 8
DEFAULT_UDP_SIZE = 1232  # DNS flag day 2020


class WireAnswer(NamedTuple):
    """One precomputed response: its rcode, section counts and the bytes after the question."""

    rcode: int
    counts: bytes  # ANCOUNT NSCOUNT ARCOUNT, without OPT
    counts_edns: bytes  # the same with ARCOUNT + 1
    body: bytes
    depends_on_client: bool = False


Slot = WireAnswer | dict[str, WireAnswer]


def make_wire_answer(
    rcode: int, an: int, ns: int, ar: int, body: bytes, depends: bool = False
) -> WireAnswer:
    counts = an.to_bytes(2) + ns.to_bytes(2)
    return WireAnswer(rcode, counts + ar.to_bytes(2), counts + (ar + 1).to_bytes(2), body, depends)


def wire_name(name: str) -> bytes:
    return _wire(dns.name.from_text(name)).lower()


def _wire(name: dns.name.Name) -> bytes:
    wire = name.to_wire()
    assert wire is not None
    return wire


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
        data = _Builder(zones, decisions, groups, {p.name: p for p in policies})
        exact, names = data.entries()
        allowed = tuple(allow_transfer)
        return cls(
            generation=generation,
            groups=groups,
            exact=exact,
            names=names,
            zones={wire_name(z.origin): data.nxdomain(z) for z in zones},
            transfers={wire_name(z.origin): data.transfer(z) for z in zones} if allowed else {},
            allow_transfer=ClientGroups([ClientGroup("allow", allowed)], default=""),
            udp_size=max(512, udp_size),
        )


class _Result(NamedTuple):
    rcode: int
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]
    additional: list[dns.rrset.RRset]
    depends: bool  # a client-dependent answer was used and the decision says it depends
    touched: bool = False  # a per-group RRset was consulted


# per name, per type: one RRset for everyone, or per client group (None = SERVFAIL)
_Variants = dns.rrset.RRset | dict[str, dns.rrset.RRset | None]


class _Builder:
    def __init__(
        self,
        zones: Sequence[Zone],
        decisions: Iterable[Decision],
        groups: ClientGroups,
        policies: Mapping[str, SteeringPolicy],
    ) -> None:
        self.zones = tuple(zones)
        self.groups = groups
        self.data: dict[str, dict[int, _Variants]] = {}
        self.depends: dict[str, bool] = {}  # steered name -> ECS scope from the client
        self.soa: dict[str, dns.rrset.RRset] = {}
        self.negative: dict[str, dns.rrset.RRset] = {}  # zone origin -> SOA with negative TTL
        self.zone_of: dict[str, Zone | None] = {}
        # (name, qtype, rcode, depends, ids of the RRsets per section) -> WireAnswer; the RRsets are
        # kept alive by self.data and the caches for the whole build, so their ids are stable
        self.encoded: dict[tuple[object, ...], WireAnswer] = {}
        origins = [z.origin for z in self.zones]
        if len(set(origins)) != len(origins):
            raise GtmError(f"duplicate zone origins: {origins}")
        for zone in self.zones:
            self._add_zone(zone)
        by_name: dict[str, dict[str, Decision]] = {}
        for d in decisions:
            by_name.setdefault(d.name, {})[d.group] = d
        for name, per_group in by_name.items():
            home = zone_for(name, self.zones)
            if home is None:
                raise GtmError(f"steered name {name!r} is in none of the zones {origins}")
            self._add_steered(home, name, per_group, policies.get(name))
        self.existing: set[str] = set()
        for zone in self.zones:
            self.existing |= zone.existing_names(
                n for n in self.data if zone_for(n, self.zones) is zone
            )

    def _put(self, name: str, rdtype: int, variants: _Variants) -> None:
        node = self.data.setdefault(name, {})
        if rdtype in node:
            raise GtmError(
                f"{name!r} {dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))}: defined twice"
            )
        node[rdtype] = variants
        if CNAME in node and len(node) > 1:
            raise GtmError(f"{name!r}: a CNAME cannot coexist with other data")

    def _add_zone(self, zone: Zone) -> None:
        soa = _rrset(zone.origin, zone.soa_ttl, SOA, [zone.soa_text()])
        self.soa[zone.origin] = soa
        self._put(zone.origin, SOA, soa)
        self._put(
            zone.origin,
            NS,
            _rrset(zone.origin, zone.ns_ttl, NS, [f"{n}." for n in zone.nameservers]),
        )
        for ns_name, addresses in zone.glue.items():
            for rdtype, family in ((A, 4), (AAAA, 6)):
                texts = [a for a in addresses if ipaddress.ip_address(a).version == family]
                if texts:
                    self._put(ns_name, rdtype, _rrset(ns_name, zone.ns_ttl, rdtype, texts))
        grouped: dict[tuple[str, int], list[dns.rdata.Rdata]] = {}
        ttls: dict[tuple[str, int], int] = {}
        for record in zone.records:
            rdata = parse_rdata(record)
            key = (record.name, rdata.rdtype)
            grouped.setdefault(key, []).append(rdata)
            ttls[key] = min(ttls.get(key, record.ttl), record.ttl)
        for (name, code), rdatas in grouped.items():
            if code == CNAME and len(rdatas) > 1:
                raise GtmError(f"{name!r}: more than one CNAME")
            self._put(name, code, dns.rrset.from_rdata_list(name + ".", ttls[name, code], rdatas))

    def _add_steered(
        self, zone: Zone, name: str, per_group: dict[str, Decision], policy: SteeringPolicy | None
    ) -> None:
        ttl = policy.ttl if policy else zone.default_ttl
        targets: dict[str, Target] = {}
        hosts: dict[str, str] = {}  # address -> SRV target host <cluster>.NAME
        for target in policy.targets if policy else ():
            targets.setdefault(target.address, target)
            label = re.sub(r"[^a-z0-9-]", "-", target.cluster.lower()).strip("-")[:63] or "target"
            hosts.setdefault(target.address, f"{label}.{name}")
        for rdtype, family in ((A, 4), (AAAA, 6)):
            per_host: dict[str, list[str]] = {}
            for address, host in hosts.items():
                if ipaddress.ip_address(address).version == family:
                    per_host.setdefault(host, []).append(address)
            for host, addresses in per_host.items():
                self._put(host, rdtype, _rrset(host, ttl, rdtype, addresses))
        by_type: dict[int, dict[str, dns.rrset.RRset | None]] = {A: {}, AAAA: {}, SRV: {}, TXT: {}}
        depends = False
        for group in self.groups.names:
            decision = per_group.get(group) or per_group.get(self.groups.default)
            if decision is None or decision.servfail:
                for variants in by_type.values():
                    variants[group] = None
                continue
            depends = depends or decision.depends_on_client
            for rdtype, family in ((A, 4), (AAAA, 6)):
                texts = [a for a in decision.addresses if ipaddress.ip_address(a).version == family]
                by_type[rdtype][group] = _rrset(name, ttl, rdtype, texts) if texts else None
            srv: dict[str, str] = {}
            for i, address in enumerate(a for a in decision.addresses if a in targets):
                target = targets[address]
                host = hosts[address]
                srv.setdefault(host, f"{i} {target.weight} {target.port} {host}.")
            srv_owner = f"_http._tcp.{name}"
            by_type[SRV][group] = _rrset(srv_owner, ttl, SRV, list(srv.values())) if srv else None
            txt = [f"group={group}", "regions=" + ",".join(decision.regions)]
            txt += decision.reasons[:4]
            wire = b"".join(len(b).to_bytes(1) + b for b in (t.encode()[:255] for t in txt))
            # built as wire bytes: one per group, and dnspython's TXT rendering is slow
            by_type[TXT][group] = dns.rrset.from_rdata(
                f"_ubiq.{name}.", ttl, dns.rdata.GenericRdata(IN, TXT, wire)
            )
        self.depends[name] = depends
        # the TXT names the group: it differs per group even when the addresses do not
        multi = len(self.groups.names) > 1
        for rdtype, owner in (
            (A, name),
            (AAAA, name),
            (SRV, f"_http._tcp.{name}"),
            (TXT, f"_ubiq.{name}"),
        ):
            if rdtype == SRV and not policy:
                continue
            self.depends[owner] = depends or (rdtype == TXT and multi)
            self._put(owner, rdtype, _servfail_or_nodata(by_type[rdtype], per_group, self.groups))

    # -- resolving at build time ------------------------------------------------------------

    def _zone_for(self, name: str) -> Zone | None:
        try:
            return self.zone_of[name]
        except KeyError:
            zone = self.zone_of[name] = zone_for(name, self.zones)
            return zone

    def _resolve(self, name: str, qtype: int, group: str, depth: int = 0) -> _Result:
        zone = self._zone_for(name)
        if zone is None:  # a CNAME pointing out of our zones: the resolver follows it
            return _Result(NOERROR, [], [], [], False)
        if name not in self.existing:
            return _Result(NXDOMAIN, [], [self._negative_soa(zone)], [], False)
        node = self.data.get(name, {})
        cname = node.get(CNAME)
        if isinstance(cname, dns.rrset.RRset) and qtype != CNAME:
            if depth >= _MAX_CHAIN:
                return _Result(NOERROR, [cname], [], [], False)
            target = str(next(iter(cname)).target).rstrip(".").lower()
            rest = self._resolve(target, qtype, group, depth + 1)
            return rest._replace(answer=[cname, *rest.answer])
        variants = node.get(qtype)
        depends = False
        rrset: dns.rrset.RRset | None
        touched = isinstance(variants, dict)
        if isinstance(variants, dict):
            depends = self.depends.get(name, True)
            if group not in variants:
                return _Result(SERVFAIL, [], [], [], depends, True)
            rrset = variants[group]
        else:
            rrset = variants
        if rrset is None:
            return _Result(NOERROR, [], [self._negative_soa(zone)], [], depends, touched)
        additional: list[dns.rrset.RRset] = []
        if qtype in (NS, SRV):
            for rdata in rrset:
                host = str(rdata.target).rstrip(".").lower()
                for addr_type in (A, AAAA):
                    glue = self.data.get(host, {}).get(addr_type)
                    if isinstance(glue, dns.rrset.RRset):
                        additional.append(glue)
        return _Result(NOERROR, [rrset], [], additional, depends, touched)

    def _negative_soa(self, zone: Zone) -> dns.rrset.RRset:
        soa = self.negative.get(zone.origin)
        if soa is None:
            soa = _rrset(zone.origin, zone.negative_ttl, SOA, (zone.soa_text(),))
            self.negative[zone.origin] = soa
        return soa

    def _encode(self, qname: dns.name.Name, qtype: int, result: _Result) -> WireAnswer:
        key = (
            qname,
            qtype,
            result.rcode,
            result.depends,
            tuple(map(id, result.answer)),
            tuple(map(id, result.authority)),
            tuple(map(id, result.additional)),
        )
        entry = self.encoded.get(key)
        if entry is None:
            entry = self.encoded[key] = _encode(qname, qtype, result)
        return entry

    def _qtypes(self, name: str, depth: int = 0) -> set[int]:
        node = self.data.get(name, {})
        types = set(node)
        cname = node.get(CNAME)
        if isinstance(cname, dns.rrset.RRset) and depth < _MAX_CHAIN:
            target = str(next(iter(cname)).target).rstrip(".").lower()
            types |= self._qtypes(target, depth + 1)
        return types

    def _slot(self, name: str, qname: dns.name.Name, qtype: int) -> Slot:
        first = self._resolve(name, qtype, self.groups.default)
        if not first.touched:
            return self._encode(qname, qtype, first)
        per_group = {
            g: self._encode(qname, qtype, self._resolve(name, qtype, g)) for g in self.groups.names
        }
        if len({e[:4] for e in per_group.values()}) == 1:
            return next(iter(per_group.values()))._replace(depends_on_client=False)
        return per_group

    def entries(self) -> tuple[dict[tuple[bytes, int], Slot], dict[bytes, Slot]]:
        exact: dict[tuple[bytes, int], Slot] = {}
        names: dict[bytes, Slot] = {}
        for name in self.existing:
            qname = dns.name.from_text(name)
            key = _wire(qname).lower()
            for qtype in self._qtypes(name):
                exact[key, qtype] = self._slot(name, qname, qtype)
            names[key] = self._slot(name, qname, _OTHER)
        return exact, names

    def nxdomain(self, zone: Zone) -> WireAnswer:
        out = io.BytesIO()
        self._negative_soa(zone).to_wire(out, compress=None)
        return make_wire_answer(NXDOMAIN, 0, 1, 0, out.getvalue())

    def transfer(self, zone: Zone) -> tuple[WireAnswer, ...]:
        """AXFR as messages: SOA, every RRset (default group's view), SOA."""
        soa = self.soa[zone.origin]
        rrsets: list[dns.rrset.RRset] = [soa]
        for name in sorted(self.data):
            if self._zone_for(name) is not zone:
                continue
            for rdtype, variants in sorted(self.data[name].items()):
                rrset = (
                    variants.get(self.groups.default) if isinstance(variants, dict) else variants
                )
                if rrset is not None and rdtype != SOA:
                    rrsets.append(rrset)
        rrsets.append(soa)
        qname = dns.name.from_text(zone.origin)
        return tuple(
            _encode(qname, 252, _Result(NOERROR, chunk, [], [], False))
            for chunk in _chunks(rrsets, _TRANSFER_BUDGET - len(_wire(qname)))
        )


# room per transfer message for the records: 64 KiB less header, question type/class and OPT+ECS
_TRANSFER_BUDGET = 65535 - 12 - 4 - 64


def _chunks(rrsets: Sequence[dns.rrset.RRset], budget: int) -> list[list[dns.rrset.RRset]]:
    """Split RRsets into runs whose uncompressed wire size (an upper bound) fits ``budget``.

    An RRset larger than the budget on its own is split into one RRset per record.
    """
    chunks: list[list[dns.rrset.RRset]] = [[]]
    used = 0
    for rrset in rrsets:
        size = _size(rrset)
        parts = [rrset]
        if size > budget:
            parts = [dns.rrset.from_rdata(rrset.name, rrset.ttl, rdata) for rdata in rrset]
        for part in parts:
            size = _size(part) if len(parts) > 1 else size
            if used + size > budget and chunks[-1]:
                chunks.append([])
                used = 0
            chunks[-1].append(part)
            used += size
    return chunks


def _size(rrset: dns.rrset.RRset) -> int:
    out = io.BytesIO()
    rrset.to_wire(out, compress=None)
    return len(out.getvalue())


def _servfail_or_nodata(
    variants: dict[str, dns.rrset.RRset | None],
    per_group: dict[str, Decision],
    groups: ClientGroups,
) -> dict[str, dns.rrset.RRset | None]:
    """Drop the groups whose decision says SERVFAIL: a missing group answers SERVFAIL."""
    out: dict[str, dns.rrset.RRset | None] = {}
    for group, rrset in variants.items():
        decision = per_group.get(group) or per_group.get(groups.default)
        if decision is not None and not decision.servfail:
            out[group] = rrset
    return out


def _rrset(name: str, ttl: int, rdtype: int, texts: Sequence[str]) -> dns.rrset.RRset:
    """Parsed once per content; callers never modify the RRset they get."""
    return _cached_rrset(name, ttl, rdtype, tuple(texts))


@functools.lru_cache(maxsize=65536)
def _cached_rrset(name: str, ttl: int, rdtype: int, texts: tuple[str, ...]) -> dns.rrset.RRset:
    rdatas = [
        dns.rdata.from_text(
            IN, dns.rdatatype.RdataType.make(rdtype), t, origin=dns.name.root, relativize=False
        )
        for t in texts
    ]
    return dns.rrset.from_rdata_list(name + ".", ttl, rdatas)


def _encode(qname: dns.name.Name, qtype: int, result: _Result) -> WireAnswer:
    if (
        len(result.answer) == 1
        and not result.authority
        and not result.additional
        and result.answer[0].rdtype in (A, AAAA, TXT)
        and result.answer[0].name == qname
    ):  # the common steered answer, encoded by hand: owner = pointer to the question name
        rrset = result.answer[0]
        head = b"\xc0\x0c" + rrset.rdtype.to_bytes(2) + b"\x00\x01" + rrset.ttl.to_bytes(4)
        parts = []
        for rdata in rrset:
            data = rdata.to_wire()
            assert data is not None
            parts.append(head + len(data).to_bytes(2) + data)
        body = b"".join(parts)
        if 16 + len(_wire(qname)) + len(body) > 65535:
            raise GtmError(f"{qname} {qtype}: answer larger than 64 KiB")
        return make_wire_answer(result.rcode, len(parts), 0, 0, body, result.depends)
    msg = dns.message.Message(id=0)
    msg.flags = 0
    msg.question.append(dns.rrset.RRset(qname, IN, dns.rdatatype.RdataType.make(qtype)))
    msg.answer.extend(result.answer)
    msg.authority.extend(result.authority)
    msg.additional.extend(result.additional)
    try:
        wire = msg.to_wire(max_size=65535)
    except dns.exception.TooBig as exc:
        raise GtmError(f"{qname} {qtype}: answer larger than 64 KiB") from exc
    start = 12 + len(_wire(qname)) + 4
    counts = wire[6:12]
    ar = int.from_bytes(counts[4:6])
    return WireAnswer(
        result.rcode, counts, counts[:4] + (ar + 1).to_bytes(2), wire[start:], result.depends
    )
