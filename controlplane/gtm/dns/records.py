"""The zone data an answer table is built from: each zone's own records, and the records
synthesized for steered names, per client group.

Steered names get, besides A/AAAA: ``_http._tcp.NAME`` SRV (one record per answered target, in
answer order: priority = position, weight and port from the target, target host
``<cluster>.NAME`` with its own A/AAAA) and ``_ubiq.NAME`` TXT saying which group, regions and
reasons produced the answer. RRsets are parsed once per content (``rrset``), so client groups
that share an answer share its RRset.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from controlplane.errors import GtmError
from controlplane.gtm.dns.zone import Zone, parse_rdata, zone_for
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.types import Decision, SteeringPolicy, Target

IN = dns.rdataclass.IN
A, NS, CNAME, SOA = dns.rdatatype.A, dns.rdatatype.NS, dns.rdatatype.CNAME, dns.rdatatype.SOA
TXT, AAAA, SRV = dns.rdatatype.TXT, dns.rdatatype.AAAA, dns.rdatatype.SRV

# per name, per type: one RRset for everyone, or per client group (None = SERVFAIL)
Variants = dns.rrset.RRset | dict[str, dns.rrset.RRset | None]


class Records:
    """Every RRset of the zones, by owner name and type; read-only once built."""

    def __init__(
        self,
        zones: Sequence[Zone],
        decisions: Iterable[Decision],
        groups: ClientGroups,
        policies: Mapping[str, SteeringPolicy],
    ) -> None:
        self.zones = tuple(zones)
        self.groups = groups
        self.data: dict[str, dict[int, Variants]] = {}
        self.depends: dict[str, bool] = {}  # steered name -> ECS scope from the client
        self.soa: dict[str, dns.rrset.RRset] = {}
        self._zone_of: dict[str, Zone | None] = {}
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

    def zone_for(self, name: str) -> Zone | None:
        try:
            return self._zone_of[name]
        except KeyError:
            zone = self._zone_of[name] = zone_for(name, self.zones)
            return zone

    def _put(self, name: str, rdtype: int, variants: Variants) -> None:
        node = self.data.setdefault(name, {})
        if rdtype in node:
            raise GtmError(
                f"{name!r} {dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))}: defined twice"
            )
        node[rdtype] = variants
        if CNAME in node and len(node) > 1:
            raise GtmError(f"{name!r}: a CNAME cannot coexist with other data")

    def _add_zone(self, zone: Zone) -> None:
        soa = rrset(zone.origin, zone.soa_ttl, SOA, [zone.soa_text()])
        self.soa[zone.origin] = soa
        self._put(zone.origin, SOA, soa)
        self._put(
            zone.origin,
            NS,
            rrset(zone.origin, zone.ns_ttl, NS, [f"{n}." for n in zone.nameservers]),
        )
        for ns_name, addresses in zone.glue.items():
            for rdtype, family in ((A, 4), (AAAA, 6)):
                texts = [a for a in addresses if ipaddress.ip_address(a).version == family]
                if texts:
                    self._put(ns_name, rdtype, rrset(ns_name, zone.ns_ttl, rdtype, texts))
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

    @classmethod
    def updated(
        cls,
        previous: Records,
        zones: Sequence[Zone],
        changed: Mapping[str, Mapping[str, Decision]],
        policies: Mapping[str, SteeringPolicy],
    ) -> Records:
        """``previous`` with new zone SOAs (the serial) and new answers for the steered names
        in ``changed``; the caller guarantees everything else is as ``previous`` was built
        (same zones but for the serial, groups, policies and steered names)."""
        new = cls.__new__(cls)
        new.zones = tuple(zones)
        new.groups = previous.groups
        new.data = dict(previous.data)
        new.depends = dict(previous.depends)
        new.soa = {}
        by_origin = {z.origin: z for z in new.zones}
        new._zone_of = {
            n: (by_origin[z.origin] if z is not None else None)
            for n, z in previous._zone_of.items()
        }
        new.existing = previous.existing
        for zone in new.zones:
            soa = rrset(zone.origin, zone.soa_ttl, SOA, [zone.soa_text()])
            new.soa[zone.origin] = soa
            new.data[zone.origin] = {**new.data[zone.origin], SOA: soa}
        copied: set[str] = set()
        for name, per_group in changed.items():
            home = zone_for(name, new.zones)
            assert home is not None  # the previous build checked it
            policy = policies.get(name)
            targets, hosts = _target_hosts(policy, name)
            for owner, rdtype, variants in new._steered(
                home, name, dict(per_group), policy, targets, hosts
            ):
                if owner not in copied:
                    new.data[owner] = dict(new.data[owner])
                    copied.add(owner)
                new.data[owner][rdtype] = variants
        return new

    def _add_steered(
        self, zone: Zone, name: str, per_group: dict[str, Decision], policy: SteeringPolicy | None
    ) -> None:
        ttl = policy.ttl if policy else zone.default_ttl
        targets, hosts = _target_hosts(policy, name)
        for rdtype, family in ((A, 4), (AAAA, 6)):
            per_host: dict[str, list[str]] = {}
            for address, host in hosts.items():
                if ipaddress.ip_address(address).version == family:
                    per_host.setdefault(host, []).append(address)
            for host, addresses in per_host.items():
                self._put(host, rdtype, rrset(host, ttl, rdtype, addresses))
        for owner, code, variants in self._steered(zone, name, per_group, policy, targets, hosts):
            self._put(owner, code, variants)

    def _steered(
        self,
        zone: Zone,
        name: str,
        per_group: dict[str, Decision],
        policy: SteeringPolicy | None,
        targets: Mapping[str, Target],
        hosts: Mapping[str, str],
    ) -> list[tuple[str, int, Variants]]:
        """The per-group RRsets of a steered name (A, AAAA, SRV, TXT by owner); sets
        ``depends`` for their owners. Everything here follows from the decisions: this is what
        an incremental build redoes for a name whose decisions changed."""
        ttl = policy.ttl if policy else zone.default_ttl
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
                texts = [a for a in decision.addresses if _family(a) == family]
                by_type[rdtype][group] = rrset(name, ttl, rdtype, texts) if texts else None
            srv: dict[str, str] = {}
            for i, address in enumerate(a for a in decision.addresses if a in targets):
                target = targets[address]
                host = hosts[address]
                srv.setdefault(host, f"{i} {target.weight} {target.port} {host}.")
            srv_owner = f"_http._tcp.{name}"
            by_type[SRV][group] = rrset(srv_owner, ttl, SRV, list(srv.values())) if srv else None
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
        out: list[tuple[str, int, Variants]] = []
        for rdtype, owner in (
            (A, name),
            (AAAA, name),
            (SRV, f"_http._tcp.{name}"),
            (TXT, f"_ubiq.{name}"),
        ):
            if rdtype == SRV and not policy:
                continue
            self.depends[owner] = depends or (rdtype == TXT and multi)
            out.append(
                (owner, rdtype, _servfail_or_nodata(by_type[rdtype], per_group, self.groups))
            )
        return out


def steered_owners(name: str) -> tuple[str, ...]:
    """The owner names whose records follow a steered name's decisions."""
    return (name, f"_http._tcp.{name}", f"_ubiq.{name}")


def _target_hosts(
    policy: SteeringPolicy | None, name: str
) -> tuple[dict[str, Target], dict[str, str]]:
    """address -> its target, and address -> its SRV target host ``<cluster>.NAME``."""
    targets: dict[str, Target] = {}
    hosts: dict[str, str] = {}
    for target in policy.targets if policy else ():
        targets.setdefault(target.address, target)
        label = re.sub(r"[^a-z0-9-]", "-", target.cluster.lower()).strip("-")[:63] or "target"
        hosts.setdefault(target.address, f"{label}.{name}")
    return targets, hosts


@functools.lru_cache(maxsize=65536)
def _family(address: str) -> int:
    return ipaddress.ip_address(address).version


def _servfail_or_nodata(
    variants: dict[str, dns.rrset.RRset | None],
    per_group: dict[str, Decision],
    groups: ClientGroups,
) -> dict[str, dns.rrset.RRset | None]:
    """Drop the groups whose decision says SERVFAIL: a missing group answers SERVFAIL."""
    out: dict[str, dns.rrset.RRset | None] = {}
    for group, rrset_ in variants.items():
        decision = per_group.get(group) or per_group.get(groups.default)
        if decision is not None and not decision.servfail:
            out[group] = rrset_
    return out


def rrset(name: str, ttl: int, rdtype: int, texts: Sequence[str]) -> dns.rrset.RRset:
    """Parsed once per content; callers never modify the RRset they get. Not SOA: its serial
    changes with every table build, so each build's SOA would stay in the cache until 65,536
    builds had pushed it out: memory grew with every policy change (found by the soak)."""
    if rdtype == SOA:
        return _parse_rrset(name, ttl, rdtype, tuple(texts))
    return _cached_rrset(name, ttl, rdtype, tuple(texts))


@functools.lru_cache(maxsize=65536)
def _cached_rrset(name: str, ttl: int, rdtype: int, texts: tuple[str, ...]) -> dns.rrset.RRset:
    return _parse_rrset(name, ttl, rdtype, texts)


def _parse_rrset(name: str, ttl: int, rdtype: int, texts: tuple[str, ...]) -> dns.rrset.RRset:
    rdatas = [
        dns.rdata.from_text(
            IN, dns.rdatatype.RdataType.make(rdtype), t, origin=dns.name.root, relativize=False
        )
        for t in texts
    ]
    return dns.rrset.from_rdata_list(name + ".", ttl, rdatas)
