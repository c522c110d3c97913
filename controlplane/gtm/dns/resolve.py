"""Resolving at build time: what a query for (name, type) from a client group gets.

CNAMEs inside our zones are followed (at most ``MAX_CHAIN`` links); a CNAME out of our zones
ends the answer (the resolver follows it). NS and SRV answers carry the A/AAAA of their
targets that we hold.
"""

from __future__ import annotations

from typing import NamedTuple

import dns.rrset

from controlplane.gtm.dns.rcodes import NOERROR, NXDOMAIN, SERVFAIL
from controlplane.gtm.dns.records import AAAA, CNAME, NS, SOA, SRV, A, Records, rrset
from controlplane.gtm.dns.zone import Zone

MAX_CHAIN = 8


class Resolution(NamedTuple):
    rcode: int
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]
    additional: list[dns.rrset.RRset]
    depends: bool  # a client-dependent answer was used and the decision says it depends
    touched: bool = False  # a per-group RRset was consulted


class Resolver:
    def __init__(self, records: Records) -> None:
        self.records = records
        self._negative: dict[str, dns.rrset.RRset] = {}  # zone origin -> SOA with negative TTL

    def resolve(self, name: str, qtype: int, group: str, depth: int = 0) -> Resolution:
        records = self.records
        zone = records.zone_for(name)
        if zone is None:  # a CNAME pointing out of our zones: the resolver follows it
            return Resolution(NOERROR, [], [], [], False)
        if name not in records.existing:
            return Resolution(NXDOMAIN, [], [self.negative_soa(zone)], [], False)
        node = records.data.get(name, {})
        cname = node.get(CNAME)
        if isinstance(cname, dns.rrset.RRset) and qtype != CNAME:
            if depth >= MAX_CHAIN:
                return Resolution(NOERROR, [cname], [], [], False)
            target = str(next(iter(cname)).target).rstrip(".").lower()
            rest = self.resolve(target, qtype, group, depth + 1)
            return rest._replace(answer=[cname, *rest.answer])
        variants = node.get(qtype)
        depends = False
        found: dns.rrset.RRset | None
        touched = isinstance(variants, dict)
        if isinstance(variants, dict):
            depends = records.depends.get(name, True)
            if group not in variants:
                return Resolution(SERVFAIL, [], [], [], depends, True)
            found = variants[group]
        else:
            found = variants
        if found is None:
            return Resolution(NOERROR, [], [self.negative_soa(zone)], [], depends, touched)
        additional: list[dns.rrset.RRset] = []
        if qtype in (NS, SRV):
            for rdata in found:
                host = str(rdata.target).rstrip(".").lower()
                for addr_type in (A, AAAA):
                    glue = records.data.get(host, {}).get(addr_type)
                    if isinstance(glue, dns.rrset.RRset):
                        additional.append(glue)
        return Resolution(NOERROR, [found], [], additional, depends, touched)

    def negative_soa(self, zone: Zone) -> dns.rrset.RRset:
        soa = self._negative.get(zone.origin)
        if soa is None:
            soa = rrset(zone.origin, zone.negative_ttl, SOA, (zone.soa_text(),))
            self._negative[zone.origin] = soa
        return soa

    def chain(self, name: str) -> list[str]:
        """The names whose records a query for ``name`` reads: itself, then its CNAME chain
        (as far as ``resolve`` follows it)."""
        out = [name]
        cname = self.records.data.get(name, {}).get(CNAME)
        while isinstance(cname, dns.rrset.RRset) and len(out) <= MAX_CHAIN:
            target = str(next(iter(cname)).target).rstrip(".").lower()
            out.append(target)
            cname = self.records.data.get(target, {}).get(CNAME)
        return out

    def qtypes(self, name: str, depth: int = 0) -> set[int]:
        """The types held at ``name`` or at the end of its CNAME chain."""
        node = self.records.data.get(name, {})
        types = set(node)
        cname = node.get(CNAME)
        if isinstance(cname, dns.rrset.RRset) and depth < MAX_CHAIN:
            target = str(next(iter(cname)).target).rstrip(".").lower()
            types |= self.qtypes(target, depth + 1)
        return types
