"""Zone transfers (AXFR) as precomputed messages.

A transfer is a tuple of wire answers, one per DNS message (RFC 5936 2.2): the first starts with
the zone's SOA, the last ends with it, and each fits one 64 KiB TCP message with room for an OPT
record. Client-dependent RRsets are transferred as the default group sees them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import dns.name
import dns.rrset

from controlplane.gtm.dns.encode import WireAnswer, encode, name_wire
from controlplane.gtm.dns.rcodes import NOERROR
from controlplane.gtm.dns.records import SOA, Records
from controlplane.gtm.dns.resolve import Resolution
from controlplane.gtm.dns.zone import Zone

_AXFR = 252
# room per transfer message for the records: 64 KiB less header, question type/class and OPT+ECS
TRANSFER_BUDGET = 65535 - 12 - 4 - 64


def transfer(records: Records, zone: Zone) -> tuple[WireAnswer, ...]:
    """AXFR as messages: SOA, every RRset (default group's view), SOA."""
    soa = records.soa[zone.origin]
    rrsets: list[dns.rrset.RRset] = [soa]
    default = records.groups.default
    for name in sorted(records.data):
        if records.zone_for(name) is not zone:
            continue
        for rdtype, variants in sorted(records.data[name].items()):
            rrset = variants.get(default) if isinstance(variants, dict) else variants
            if rrset is not None and rdtype != SOA:
                rrsets.append(rrset)
    rrsets.append(soa)
    qname = dns.name.from_text(zone.origin)
    return tuple(
        encode(qname, _AXFR, Resolution(NOERROR, chunk, [], [], False))
        for chunk in chunks(rrsets, TRANSFER_BUDGET - len(name_wire(qname)))
    )


def chunks(rrsets: Sequence[dns.rrset.RRset], budget: int) -> list[list[dns.rrset.RRset]]:
    """Split RRsets into runs whose uncompressed wire size (an upper bound) fits ``budget``.

    An RRset larger than the budget on its own is split into one RRset per record.
    """
    out: list[list[dns.rrset.RRset]] = [[]]
    used = 0
    for rrset in rrsets:
        size = _size(rrset)
        parts = [rrset]
        if size > budget:
            parts = [dns.rrset.from_rdata(rrset.name, rrset.ttl, rdata) for rdata in rrset]
        for part in parts:
            size = _size(part) if len(parts) > 1 else size
            if used + size > budget and out[-1]:
                out.append([])
                used = 0
            out[-1].append(part)
            used += size
    return out


def _size(rrset: dns.rrset.RRset) -> int:
    out = io.BytesIO()
    rrset.to_wire(out, compress=None)
    return len(out.getvalue())
