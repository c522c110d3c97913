"""The GTM's answer function: query bytes + answer table + client -> response bytes (sans-I/O).

Fast path: a plain query (QUERY opcode, QDCOUNT=1, no compression in the question, class IN,
at most one OPT with nothing else in the other sections) is parsed by hand, looked up in the
table and answered by splicing the query's ID, RD/CD bits and question bytes (which keeps the
client's letter case, RFC 1034 4.3.1 / 0x20) around precomputed bytes. Everything else goes
through dnspython, which turns odd-but-legal queries into the same lookup and malformed ones
into FORMERR.

Rules: AA on every answer from our zones; NXDOMAIN + SOA for a missing name under a zone
(empty non-terminals are NODATA); NODATA + SOA for a missing type; REFUSED outside our zones
and for other classes; FORMERR for malformed queries; NOTIMP for other opcodes; BADVERS for
EDNS versions other than 0 (RFC 6891); TC when the answer exceeds 512 bytes, or the client's
EDNS size capped at ours, over UDP (RFC 7766: full answers over TCP); ANY answered with one
HINFO "RFC8482" (RFC 8482); AXFR/IXFR only for allowed networks and over TCP, where a zone that
does not fit one message comes back as a ``Transfer`` (RFC 5936 2.2); responses (QR=1)
and messages shorter than a header are dropped (``None``). Only meta types (OPT, 249..255) take
the special path: CAA, URI, TA and every other data type are NODATA or NXDOMAIN by the name.
ECS scope for a client-dependent answer is the source prefix, or longer when a group network
inside the source network is longer (RFC 7871 7.2.1); 0 for a /0 source or a uniform answer.
"""

from __future__ import annotations

from typing import NamedTuple

import dns.edns
import dns.exception
import dns.message
import dns.name

from controlplane.errors import DnsFormatError
from controlplane.gtm.dns.ecs import ECS_CODE, ClientSubnet, echo_option, make_opt, parse_ecs
from controlplane.gtm.dns.encode import WireAnswer, make_wire_answer
from controlplane.gtm.dns.rcodes import BADVERS_HIGH, FORMERR, NOTAUTH, NOTIMP, REFUSED
from controlplane.gtm.dns.table import AnswerTable

_HEADER = 12  # bytes of a DNS header: the question starts here
_MAX_NAME = 255  # wire bytes of the longest name (RFC 1035 3.1)
#: a name's root label must sit before this offset (else the name is too long)
_NAME_END_LIMIT = _HEADER + _MAX_NAME
# The OPT record after the question, by offset from its start: root name (0), TYPE (1-2),
# UDP payload size (3-4), extended rcode (5), EDNS version (6), flags (7-8), RDLENGTH (9-10),
# then the options.
_OPT_HEAD = b"\x00\x00\x29"  # root name + TYPE 41
_OPT_UDP_SIZE = 3
_OPT_VERSION = 6
_OPT_RDLENGTH = 9
_OPT_FIXED = 11  # bytes before the options
_QTYPE_QCLASS = 4  # bytes after the question name
_AXFR, _IXFR, _ANY, _OPT = 252, 251, 255, 41

# response flags indexed by (RD << 5) | CD | rcode: QR + AA, RD and CD copied from the query
_FLAGS = tuple(bytes((0x84 | (i >> 5), i & 0x1F)) for i in range(64))
_TC_FLAGS = tuple(bytes((0x86 | (i >> 5), i & 0x1F)) for i in range(64))
_QDCOUNT1 = b"\x00\x01"
_EMPTY_COUNTS = b"\x00\x00\x00\x00\x00\x00"
_EMPTY_COUNTS_EDNS = b"\x00\x00\x00\x00\x00\x01"
# RFC 8482: one synthesized HINFO at the question name (pointer to offset 12)
_ANY_ANSWER = make_wire_answer(
    0, 1, 0, 0, b"\xc0\x0c\x00\x0d\x00\x01" + (3600).to_bytes(4) + b"\x00\x09\x07RFC8482\x00"
)


class Transfer(bytes):
    """A zone transfer of several messages: the bytes are the first, ``messages`` all of them.

    Only TCP clients get one, so only the TCP layer checks for it (``type(r) is Transfer``);
    everyone else can treat it as the first message (metrics do).
    """

    messages: tuple[bytes, ...]

    @classmethod
    def of(cls, messages: tuple[bytes, ...]) -> Transfer:
        transfer = cls(messages[0])
        transfer.messages = messages
        return transfer


class Client(NamedTuple):
    host: str  # source address as text
    tcp: bool = False


class _Query(NamedTuple):
    question: bytes  # name (as sent, uncompressed) + type + class
    key: bytes  # name in lower case
    qtype: int
    qclass: int
    edns_size: int  # -1 without EDNS
    edns_version: int
    ecs: ClientSubnet | None


def answer(query: bytes, table: AnswerTable, client: Client) -> bytes | None:
    """The response to ``query``, or None when no response is owed."""
    n = len(query)
    if n < 12 or query[2] & 0x80:
        return None
    if query[2] & 0x78:
        return _header_only(query, NOTIMP)
    if query[4:10] == b"\x00\x01\x00\x00\x00\x00":
        i = _HEADER
        while i < n:
            length = query[i]
            if length == 0 or length > 63:
                break
            i += length + 1
        else:
            return _slow(query, table, client)
        # i: the root label ending the name; end: just past QTYPE and QCLASS
        end = i + 1 + _QTYPE_QCLASS
        if length == 0 and i < _NAME_END_LIMIT and end <= n and query[i + 3 : end] == b"\x00\x01":
            arcount = query[10:12]
            if arcount == b"\x00\x00" and end == n:
                q = _Query(
                    query[_HEADER:end],
                    query[_HEADER : i + 1].lower(),
                    (query[i + 1] << 8) | query[i + 2],
                    1,
                    -1,
                    0,
                    None,
                )
                return _respond(query, q, table, client)
            options = end + _OPT_FIXED
            if arcount == b"\x00\x01" and options <= n and query[end : end + 3] == _OPT_HEAD:
                rdlen = (query[end + _OPT_RDLENGTH] << 8) | query[end + _OPT_RDLENGTH + 1]
                if options + rdlen == n:
                    try:
                        ecs = _options(query, options, n)
                    except DnsFormatError:
                        return _header_only(query, FORMERR)
                    q = _Query(
                        query[_HEADER:end],
                        query[_HEADER : i + 1].lower(),
                        (query[i + 1] << 8) | query[i + 2],
                        1,
                        (query[end + _OPT_UDP_SIZE] << 8) | query[end + _OPT_UDP_SIZE + 1],
                        query[end + _OPT_VERSION],
                        ecs,
                    )
                    return _respond(query, q, table, client)
    return _slow(query, table, client)


def _options(query: bytes, i: int, n: int) -> ClientSubnet | None:
    ecs = None
    while i < n:
        if i + 4 > n:
            raise DnsFormatError("truncated EDNS option")
        code = (query[i] << 8) | query[i + 1]
        length = (query[i + 2] << 8) | query[i + 3]
        if i + 4 + length > n:
            raise DnsFormatError("EDNS option overruns the OPT record")
        if code == ECS_CODE:
            if ecs is not None:
                raise DnsFormatError("two ECS options")
            ecs = parse_ecs(query[i + 4 : i + 4 + length])
        i += 4 + length
    return ecs


def _slow(query: bytes, table: AnswerTable, client: Client) -> bytes | None:
    try:
        msg = dns.message.from_wire(query, one_rr_per_rrset=True)
        if len(msg.question) != 1:
            raise DnsFormatError(f"{len(msg.question)} questions")
        rrset = msg.question[0]
        ecs = None
        for option in msg.options:
            if option.otype == dns.edns.ECS:
                if ecs is not None:
                    raise DnsFormatError("two ECS options")
                ecs = parse_ecs(option.to_wire())
    except dns.message.ShortHeader:
        return None
    except Exception:  # anything dnspython cannot make sense of is a malformed query
        return _header_only(query, FORMERR)
    name = rrset.name.to_wire()
    assert name is not None
    question = name + rrset.rdtype.to_bytes(2) + rrset.rdclass.to_bytes(2)
    edns_size = msg.payload if msg.edns >= 0 else -1
    q = _Query(
        question, name.lower(), rrset.rdtype, rrset.rdclass, edns_size, max(msg.edns, 0), ecs
    )
    return _respond(query, q, table, client)


def _respond(query: bytes, q: _Query, table: AnswerTable, client: Client) -> bytes:
    if q.edns_version:
        opt = make_opt(table.udp_size, ext_rcode=BADVERS_HIGH)
        return _assemble(query, 0, _EMPTY_COUNTS_EDNS, q.question, opt)
    key = q.key
    qtype = q.qtype
    if q.qclass != 1 or 249 <= qtype <= 255 or qtype == _OPT:
        special = _special(query, q, table, client)
        if special is not None:
            return special
    slot = table.exact.get((key, qtype))
    if slot is None:
        slot = table.names.get(key)
        if slot is None:
            entry = _nxdomain(key, table)
            if entry is None:
                return _refused(query, q, table)
            return _finish(query, q, entry, table, client)
        if qtype == _ANY:
            return _finish(query, q, _ANY_ANSWER, table, client)
    if isinstance(slot, WireAnswer):
        return _finish(query, q, slot, table, client)
    ecs = q.ecs
    groups = table.groups
    if ecs is None:
        group = groups.lookup(client.host)
    else:
        view = table.ecs_memo.get(ecs.data)
        group = (view or _ecs_view(table, ecs))[0]
    entry = slot.get(group) or slot[groups.default]
    return _finish(query, q, entry, table, client)


def _finish(
    query: bytes, q: _Query, entry: WireAnswer, table: AnswerTable, client: Client
) -> bytes:
    index = ((query[2] & 1) << 5) | (query[3] & 0x10) | entry.rcode
    if q.edns_size < 0:
        response = b"".join(
            (query[:2], _FLAGS[index], _QDCOUNT1, entry.counts, q.question, entry.body)
        )
        limit = 512
    else:
        ecs = q.ecs
        if ecs is None:
            opt = table.opt
        else:
            view = table.ecs_memo.get(ecs.data) or _ecs_view(table, ecs)
            opt = view[1] if entry.depends_on_client else view[2]
        response = b"".join(
            (query[:2], _FLAGS[index], _QDCOUNT1, entry.counts_edns, q.question, entry.body, opt)
        )
        limit = min(max(q.edns_size, 512), table.udp_size)
    if client.tcp or len(response) <= limit:
        return response
    if q.edns_size < 0:
        return b"".join((query[:2], _TC_FLAGS[index], _QDCOUNT1, _EMPTY_COUNTS, q.question))
    return b"".join(
        (query[:2], _TC_FLAGS[index], _QDCOUNT1, _EMPTY_COUNTS_EDNS, q.question, table.opt)
    )


_ECS_MEMO_LIMIT = 65536


def _ecs_view(table: AnswerTable, ecs: ClientSubnet) -> tuple[str, bytes, bytes]:
    """The client group of an ECS subnet and the two OPT echoes, memoised on the table."""
    groups = table.groups
    if ecs.family == 1:
        group = groups.lookup_v4(ecs.address, ecs.source)
        scope = groups.scope_v4(ecs.address, ecs.source) if ecs.source else 0
    else:
        group = groups.lookup_v6(ecs.address, ecs.source)
        scope = groups.scope_v6(ecs.address, ecs.source) if ecs.source else 0
    view = (
        group,
        make_opt(table.udp_size, echo_option(ecs, scope)),
        make_opt(table.udp_size, echo_option(ecs, 0)),
    )
    memo = table.ecs_memo
    if len(memo) >= _ECS_MEMO_LIMIT:
        memo.clear()
    memo[ecs.data] = view
    return view


def _special(query: bytes, q: _Query, table: AnswerTable, client: Client) -> bytes | None:
    """Other classes and meta types; None means: answer normally."""
    qtype = q.qtype
    if q.qclass != 1:
        return _refused(query, q, table)
    if qtype in (_AXFR, _IXFR):
        if table.allow_transfer.lookup(client.host) != "allow":
            return _refused(query, q, table)
        entries = table.transfers.get(q.key)
        if entries is None:
            return _assemble(query, NOTAUTH, _counts(q), q.question, _opt(q, table))
        if not client.tcp:  # a zone transfer needs TCP: an empty truncated answer says so
            index = ((query[2] & 1) << 5) | (query[3] & 0x10)
            return b"".join(
                (query[:2], _TC_FLAGS[index], _QDCOUNT1, _counts(q), q.question, _opt(q, table))
            )
        if len(entries) == 1:
            return _finish(query, q, entries[0], table, client)
        return Transfer.of(tuple(_finish(query, q, e, table, client) for e in entries))
    if qtype == _ANY:
        return None
    if qtype in (253, 254):  # MAILB, MAILA
        return _assemble(query, NOTIMP, _counts(q), q.question, _opt(q, table))
    return _header_only(query, FORMERR)  # OPT, TSIG, TKEY as a question


def _nxdomain(key: bytes, table: AnswerTable) -> WireAnswer | None:
    zones = table.zones
    i = 0
    n = len(key)
    while i < n:
        entry = zones.get(key[i:])
        if entry is not None:
            return entry
        i += key[i] + 1
    return None


def _refused(query: bytes, q: _Query, table: AnswerTable) -> bytes:
    flags = bytes((0x80 | (query[2] & 1), REFUSED | (query[3] & 0x10)))
    return query[:2] + flags + _QDCOUNT1 + _counts(q) + q.question + _opt(q, table)


def _counts(q: _Query) -> bytes:
    return _EMPTY_COUNTS if q.edns_size < 0 else _EMPTY_COUNTS_EDNS


def _opt(q: _Query, table: AnswerTable) -> bytes:
    return b"" if q.edns_size < 0 else table.opt


def _assemble(query: bytes, rcode: int, counts: bytes, question: bytes, opt: bytes) -> bytes:
    index = ((query[2] & 1) << 5) | (query[3] & 0x10) | rcode
    return query[:2] + _FLAGS[index] + _QDCOUNT1 + counts + question + opt


def _header_only(query: bytes, rcode: int) -> bytes:
    """FORMERR/NOTIMP: the query's ID, opcode and RD, no sections (we could not trust them)."""
    flags = bytes((0x80 | (query[2] & 0x79), rcode))
    return query[:2] + flags + b"\x00" * 8
