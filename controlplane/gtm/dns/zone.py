"""Zone data the GTM is authoritative for: SOA, NS with glue, static records, which names exist.

Names are lower case, without the trailing dot, everywhere in this module. A zone knows its
own names (static records, glue, the apex) plus the steered names handed to it by the answer
table; ``existing_names`` adds every empty non-terminal between a name and the apex, because an
empty non-terminal answers NODATA, never NXDOMAIN (RFC 8020).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from controlplane.errors import GtmError


@dataclass(frozen=True, slots=True)
class StaticRecord:
    """One record in presentation format, e.g. ``StaticRecord("www.gtm.example", "CNAME", "app.gtm.example.")``."""

    name: str
    rtype: str
    rdata: str
    ttl: int = 300


@dataclass(frozen=True, slots=True)
class Zone:
    origin: str
    nameservers: tuple[str, ...]
    glue: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # NS name -> addresses
    records: tuple[StaticRecord, ...] = ()
    hostmaster: str = ""  # SOA RNAME as a name; default hostmaster.<origin>
    serial: int = 1
    refresh: int = 3600
    retry: int = 600
    expire: int = 604800
    minimum: int = 30  # negative-caching TTL (RFC 2308)
    soa_ttl: int = 3600
    ns_ttl: int = 3600
    default_ttl: int = 30  # steered names without a policy TTL

    def __post_init__(self) -> None:
        if not self.nameservers:
            raise GtmError(f"zone {self.origin!r}: at least one nameserver is required")
        for name in (self.origin, *self.nameservers, *self.glue, *(r.name for r in self.records)):
            if name != name.lower() or name.endswith("."):
                raise GtmError(
                    f"zone {self.origin!r}: name {name!r} must be lower case, no trailing dot"
                )
        for ns, addresses in self.glue.items():
            if not self.contains(ns):
                raise GtmError(f"zone {self.origin!r}: glue for {ns!r} which is outside the zone")
            for address in addresses:
                try:
                    ipaddress.ip_address(address)
                except ValueError as exc:
                    raise GtmError(
                        f"zone {self.origin!r}: glue address {address!r} for {ns!r}"
                    ) from exc
        for record in self.records:
            if not self.contains(record.name):
                raise GtmError(f"zone {self.origin!r}: record {record.name!r} is outside the zone")
            parse_rdata(record)

    def contains(self, name: str) -> bool:
        return name == self.origin or name.endswith("." + self.origin)

    @property
    def rname(self) -> str:
        return self.hostmaster or f"hostmaster.{self.origin}"

    @property
    def negative_ttl(self) -> int:
        return min(self.soa_ttl, self.minimum)

    def soa_text(self) -> str:
        return (
            f"{self.nameservers[0]}. {self.rname}. {self.serial} {self.refresh} "
            f"{self.retry} {self.expire} {self.minimum}"
        )

    def existing_names(self, extra: Iterable[str] = ()) -> set[str]:
        """Every name that exists in the zone, empty non-terminals included."""
        names = {self.origin}
        origin_labels = self.origin.count(".") + 1
        for name in (*self.glue, *(r.name for r in self.records), *extra):
            labels = name.split(".")
            for i in range(len(labels) - origin_labels + 1):
                names.add(".".join(labels[i:]))
        return names


def parse_rdata(record: StaticRecord) -> dns.rdata.Rdata:
    try:
        rdtype = dns.rdatatype.from_text(record.rtype)
        return dns.rdata.from_text(
            dns.rdataclass.IN, rdtype, record.rdata, origin=dns.name.root, relativize=False
        )
    except (dns.exception.DNSException, ValueError) as exc:
        raise GtmError(
            f"record {record.name!r} {record.rtype}: bad rdata {record.rdata!r}: {exc}"
        ) from exc


def zone_for(name: str, zones: Iterable[Zone]) -> Zone | None:
    """The most specific zone containing ``name``."""
    best: Zone | None = None
    for zone in zones:
        if zone.contains(name) and (best is None or len(zone.origin) > len(best.origin)):
            best = zone
    return best
