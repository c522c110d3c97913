"""No UDP answer is larger than the client allows: 512 bytes without EDNS, else its EDNS size
(at least 512) capped at ours; what does not fit is TC with the question only, and what fits is
whole. Checked for TXT records, big RRsets and a steered name, with and without client subnet."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.gtm.dns.answer import Client, answer
from controlplane.gtm.dns.table import AnswerTable
from tests.support.dns_sizes import size_names, size_table

TABLES = {size: size_table(size) for size in (1232, 4096)}  # ours: the default, and a larger one
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def whole(
    table: AnswerTable, name: str, rtype: str, options: list[dns.edns.Option] | None = None
) -> dns.message.Message:
    """The answer over TCP (never truncated), with the same client subnet if any."""
    query = dns.message.make_query(name, rtype, use_edns=0 if options else None, options=options)
    wire = answer(query.to_wire(), table, Client("192.0.2.1", True))
    assert wire is not None
    return dns.message.from_wire(wire)


def mixed_case(name: str, pattern: int) -> str:
    return "".join(c.upper() if pattern >> (i % 30) & 1 else c for i, c in enumerate(name))


@SETTINGS
@given(
    st.sampled_from(size_names()),
    st.one_of(st.none(), st.integers(0, 65535)),
    st.one_of(
        st.none(), st.tuples(st.sampled_from(["10.1.2.3", "2001:db8:e::1"]), st.integers(0, 32))
    ),
    st.integers(0, 2**30),
    st.sampled_from(sorted(TABLES)),
)
def test_udp_answers_fit_what_the_client_advertised(
    question: tuple[str, str],
    payload: int | None,
    subnet: tuple[str, int] | None,
    case: int,
    ours: int,
) -> None:
    table = TABLES[ours]
    name, rtype = question
    options = [dns.edns.ECSOption(subnet[0], subnet[1])] if subnet and payload is not None else []
    query = dns.message.make_query(
        mixed_case(name, case),
        rtype,
        use_edns=None if payload is None else 0,
        payload=payload or 0,
        options=options,
    )
    wire = answer(query.to_wire(), table, Client("192.0.2.1"))
    assert wire is not None
    limit = 512 if payload is None else min(max(payload, 512), table.udp_size)
    assert len(wire) <= limit
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id and reply.question == query.question
    if reply.flags & dns.flags.TC:
        assert not reply.answer and not reply.authority
    else:
        full = whole(table, name, rtype, options)
        assert sum(len(r) for r in reply.answer) == sum(len(r) for r in full.answer) > 0


def test_every_big_answer_is_truncated_without_edns_and_whole_over_tcp() -> None:
    table = TABLES[1232]
    for name, rtype in size_names():
        full = whole(table, name, rtype)
        assert full.answer and not full.flags & dns.flags.TC
        wire = answer(dns.message.make_query(name, rtype).to_wire(), table, Client("192.0.2.1"))
        assert wire is not None and len(wire) <= 512
        if len(full.to_wire()) > 512:
            assert dns.message.from_wire(wire).flags & dns.flags.TC
