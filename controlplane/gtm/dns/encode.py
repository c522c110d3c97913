"""Resolutions encoded as wire answers: the bytes the answer path splices after a question.

An answer's ``body`` is everything after the question; its compression pointers may point into
the question name at offset 12, which is valid for any query whose question name is the same name
in any letter case (same label lengths), so the answer path copies the question from the query.
NXDOMAIN answers are position independent (no compression at all): the question name varies.
A WireAnswer holds counts without OPT; the answer path appends OPT and bumps ARCOUNT for EDNS.
"""

from __future__ import annotations

import io
from typing import NamedTuple

import dns.exception
import dns.message
import dns.name
import dns.rrset

from controlplane.errors import GtmError
from controlplane.gtm.dns.rcodes import NXDOMAIN
from controlplane.gtm.dns.records import AAAA, IN, TXT, A
from controlplane.gtm.dns.resolve import Resolution

_HEADER = 12
_MAX_MESSAGE = 65535


class WireAnswer(NamedTuple):
    """One precomputed response: its rcode, section counts and the bytes after the question."""

    rcode: int
    counts: bytes  # ANCOUNT NSCOUNT ARCOUNT, without OPT
    counts_edns: bytes  # the same with ARCOUNT + 1
    body: bytes
    depends_on_client: bool = False


def make_wire_answer(
    rcode: int, an: int, ns: int, ar: int, body: bytes, depends: bool = False
) -> WireAnswer:
    counts = an.to_bytes(2) + ns.to_bytes(2)
    return WireAnswer(rcode, counts + ar.to_bytes(2), counts + (ar + 1).to_bytes(2), body, depends)


def wire_name(name: str) -> bytes:
    """A name's lower-case wire form: the key the answer path looks names up by."""
    return name_wire(dns.name.from_text(name)).lower()


def name_wire(name: dns.name.Name) -> bytes:
    wire = name.to_wire()
    assert wire is not None
    return wire


class Encoder:
    """Encodes resolutions, each distinct one once.

    Keyed by (name, qtype, rcode, depends, ids of the RRsets per section): the RRsets are kept
    alive by the records and resolver of the same build, so their ids are stable while this
    encoder is used; keep one per build.
    """

    def __init__(self) -> None:
        self._encoded: dict[tuple[object, ...], WireAnswer] = {}

    def encode(self, qname: dns.name.Name, qtype: int, result: Resolution) -> WireAnswer:
        key = (
            qname,
            qtype,
            result.rcode,
            result.depends,
            tuple(map(id, result.answer)),
            tuple(map(id, result.authority)),
            tuple(map(id, result.additional)),
        )
        entry = self._encoded.get(key)
        if entry is None:
            entry = self._encoded[key] = encode(qname, qtype, result)
        return entry


def encode_nxdomain(negative_soa: dns.rrset.RRset) -> WireAnswer:
    """NXDOMAIN with the zone's SOA in authority, uncompressed (the question name varies)."""
    out = io.BytesIO()
    negative_soa.to_wire(out, compress=None)
    return make_wire_answer(NXDOMAIN, 0, 1, 0, out.getvalue())


def encode(qname: dns.name.Name, qtype: int, result: Resolution) -> WireAnswer:
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
        if _HEADER + len(name_wire(qname)) + 4 + len(body) > _MAX_MESSAGE:
            raise GtmError(f"{qname} {qtype}: answer larger than 64 KiB")
        return make_wire_answer(result.rcode, len(parts), 0, 0, body, result.depends)
    msg = dns.message.Message(id=0)
    msg.flags = 0
    msg.question.append(dns.rrset.RRset(qname, IN, dns.rdatatype.RdataType.make(qtype)))
    msg.answer.extend(result.answer)
    msg.authority.extend(result.authority)
    msg.additional.extend(result.additional)
    try:
        wire = msg.to_wire(max_size=_MAX_MESSAGE)
    except dns.exception.TooBig as exc:
        raise GtmError(f"{qname} {qtype}: answer larger than 64 KiB") from exc
    start = _HEADER + len(name_wire(qname)) + 4
    counts = wire[6:12]
    ar = int.from_bytes(counts[4:6])
    return WireAnswer(
        result.rcode, counts, counts[:4] + (ar + 1).to_bytes(2), wire[start:], result.depends
    )
