"""answer() never raises, never over-answers, and owes FORMERR where a header is parseable."""

from __future__ import annotations

import dns.message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.gtm.dns.answer import Client, answer
from tests.support.dns import ORIGIN, sample_table

TABLE = sample_table()
UDP = Client("127.0.0.2")
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NAMES = [
    f"app.{ORIGIN}",
    f"big.{ORIGIN}",
    f"www.{ORIGIN}",
    f"missing.{ORIGIN}",
    ORIGIN,
    "elsewhere.test",
]
TYPES = ["A", "AAAA", "TXT", "SRV", "NS", "SOA", "ANY", "MX", "CNAME"]


def udp_limit(query: bytes) -> int:
    """What the query allows over UDP: 512, or its EDNS size (at least 512) when it parses."""
    try:
        msg = dns.message.from_wire(query)
    except Exception:
        return 512
    return max(512, msg.payload) if msg.edns >= 0 else 512


def check(query: bytes) -> None:
    reply = answer(query, TABLE, UDP)
    if reply is None:
        assert len(query) < 12 or query[2] & 0x80
        return
    assert len(reply) >= 12
    assert reply[:2] == query[:2]
    assert reply[2] & 0x80
    assert len(reply) <= udp_limit(query)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.binary(min_size=12, max_size=12), st.binary(max_size=300))
def test_query_header_with_random_body(header: bytes, body: bytes) -> None:
    query = header[:2] + bytes((header[2] & 0x01, header[3])) + header[4:] + body
    reply = answer(query, TABLE, UDP)
    assert reply is not None  # a QUERY with a full header always gets an answer
    check(query)


@FUZZ
@given(
    st.sampled_from(NAMES),
    st.sampled_from(TYPES),
    st.integers(0, 11),
    st.booleans(),
    st.integers(0, 65535),
)
def test_truncated_valid_queries(name: str, rtype: str, cut: int, edns: bool, payload: int) -> None:
    query = dns.message.make_query(
        name, rtype, use_edns=0 if edns else None, payload=payload
    ).to_wire()
    check(query[: len(query) - cut])
    check(query)


@FUZZ
@given(st.sampled_from(NAMES), st.sampled_from(TYPES), st.integers(0, 65535))
def test_valid_queries_respect_udp_size(name: str, rtype: str, payload: int) -> None:
    query = dns.message.make_query(name, rtype, use_edns=0, payload=payload).to_wire()
    reply = answer(query, TABLE, UDP)
    assert reply is not None
    assert len(reply) <= max(512, min(payload, TABLE.udp_size))
    parsed = dns.message.from_wire(reply)
    assert parsed.rcode() in (0, 3, 5)


@FUZZ
@given(st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535))
def test_huge_counts(qd: int, an: int, ns: int, ar: int) -> None:
    counts = b"".join(n.to_bytes(2) for n in (qd, an, ns, ar))
    query = b"\x12\x34\x00\x00" + counts + b"\x03app\x03gtm\x07example\x00\x00\x01\x00\x01"
    reply = answer(query, TABLE, UDP)
    assert reply is not None
    if (qd, an, ns, ar) != (1, 0, 0, 0):
        assert reply[3] & 0x0F == 1  # FORMERR: the counts promise records that are not there


@FUZZ
@given(st.lists(st.integers(0, 40), min_size=1, max_size=6))
def test_compression_pointer_loops(offsets: list[int]) -> None:
    name = b"".join(b"\xc0" + bytes((12 + o,)) for o in offsets)
    query = b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00\x01\x00\x01"
    reply = answer(query, TABLE, UDP)
    assert reply is not None and reply[3] & 0x0F == 1


def test_long_name_over_255_is_formerr() -> None:
    name = b"\x3f" + b"a" * 63
    query = b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name * 5 + b"\x00\x00\x01\x00\x01"
    reply = answer(query, TABLE, UDP)
    assert reply is not None and reply[3] & 0x0F == 1
