"""answer(): bytes in, bytes out, against the sample table (no sockets)."""

from __future__ import annotations

import ipaddress

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from controlplane.errors import GtmError
from controlplane.gtm.dns.answer import Client, answer
from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.zone import StaticRecord, Zone
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.types import ClientGroup, Decision
from tests.support.dns import EU_V4, EU_V6, ORIGIN, US_V4, sample_table

TABLE = sample_table(allow_transfer=["127.0.0.9/32"])
EU, US, OTHER = Client("127.0.0.2"), Client("127.0.0.3"), Client("192.0.2.77")


def ask(
    name: str, rtype: str = "A", client: Client = OTHER, **kwargs: object
) -> dns.message.Message:
    query = dns.message.make_query(name, rtype, **kwargs)  # type: ignore[arg-type]
    wire = answer(query.to_wire(), TABLE, client)
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.id == query.id
    return response


def addresses(response: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in response.answer for rd in rrset if rrset.rdtype in (1, 28)]


def test_steered_answer_depends_on_source_address() -> None:
    assert addresses(ask(f"app.{ORIGIN}", client=EU)) == [EU_V4]
    assert addresses(ask(f"app.{ORIGIN}", client=US)) == [US_V4]
    assert sorted(addresses(ask(f"app.{ORIGIN}", client=OTHER))) == [EU_V4, US_V4]
    assert addresses(ask(f"app.{ORIGIN}", "AAAA", client=EU)) == [EU_V6]


def test_authoritative_flags_and_rd_copied() -> None:
    response = ask(f"app.{ORIGIN}", client=EU)
    assert response.flags & dns.flags.AA and response.flags & dns.flags.QR
    assert response.flags & dns.flags.RD  # make_query sets RD; we copy it
    assert not response.flags & dns.flags.RA


def test_question_case_is_preserved() -> None:
    query = dns.message.make_query("ApP.GtM.ExAmPlE", "A")
    wire = answer(query.to_wire(), TABLE, EU)
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.question[0].name.to_text() == "ApP.GtM.ExAmPlE."
    assert addresses(response) == [EU_V4]


def test_ecs_selects_group_and_echoes_scope() -> None:
    option = dns.edns.ECSOption("10.2.3.0", 24)
    response = ask(f"app.{ORIGIN}", client=EU, use_edns=0, options=[option])
    assert addresses(response) == [US_V4]
    (echo,) = response.options
    assert isinstance(echo, dns.edns.ECSOption)
    assert (echo.address, echo.srclen, echo.scopelen) == ("10.2.3.0", 24, 24)


def test_ecs_scope_zero_when_answer_does_not_depend_on_client() -> None:
    response = ask(f"same.{ORIGIN}", use_edns=0, options=[dns.edns.ECSOption("10.2.3.0", 24)])
    (echo,) = response.options
    assert isinstance(echo, dns.edns.ECSOption)
    assert echo.scopelen == 0
    response = ask(f"static.{ORIGIN}", use_edns=0, options=[dns.edns.ECSOption("10.2.3.0", 24)])
    assert response.options[0].scopelen == 0


def test_ecs_ipv6_prefix_match() -> None:
    option = dns.edns.ECSOption("2001:db8:e::", 56)
    assert addresses(ask(f"app.{ORIGIN}", client=US, use_edns=0, options=[option])) == [EU_V4]


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x03\x18\x00\x0a\x02\x03",  # unknown family
        b"\x00\x01\x21\x00\x0a\x02\x03\x04\x05",  # /33 for IPv4
        b"\x00\x01\x18\x08\x0a\x02\x03",  # non-zero scope in a query
        b"\x00\x01\x18\x00\x0a\x02",  # address too short for /24
        b"\x00\x01\x17\x00\x0a\x02\x03",  # bits beyond /23
    ],
)
def test_bad_ecs_is_formerr(data: bytes) -> None:
    query = dns.message.make_query(
        f"app.{ORIGIN}",
        "A",
        use_edns=0,
        options=[dns.edns.GenericOption(dns.edns.OptionType.ECS, data)],
    )
    wire = answer(query.to_wire(), TABLE, EU)
    assert wire is not None and wire[3] & 0x0F == dns.rcode.FORMERR


def test_nxdomain_with_soa() -> None:
    response = ask(f"missing.{ORIGIN}")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    (soa,) = response.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.ttl == 30


def test_nodata_for_missing_type_and_empty_non_terminal() -> None:
    for name, rtype in (
        (f"static.{ORIGIN}", "AAAA"),
        (f"ent.{ORIGIN}", "A"),
        (f"app.{ORIGIN}", "MX"),
    ):
        response = ask(name, rtype)
        assert response.rcode() == dns.rcode.NOERROR, name
        assert not response.answer
        assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_below_existing_name_is_nxdomain() -> None:
    assert ask(f"x.leaf.ent.{ORIGIN}").rcode() == dns.rcode.NXDOMAIN


def test_refused_outside_zone_and_other_class() -> None:
    response = ask("example.org")
    assert response.rcode() == dns.rcode.REFUSED and not response.flags & dns.flags.AA
    assert ask(f"app.{ORIGIN}", "A", rdclass="CH").rcode() == dns.rcode.REFUSED


def test_soa_ns_with_glue() -> None:
    assert ask(ORIGIN, "SOA").answer[0].rdtype == dns.rdatatype.SOA
    response = ask(ORIGIN, "NS")
    assert {rd.to_text() for rd in response.answer[0]} == {f"ns1.{ORIGIN}.", f"ns2.{ORIGIN}."}
    assert {rrset.name.to_text() for rrset in response.additional} == {
        f"ns1.{ORIGIN}.",
        f"ns2.{ORIGIN}.",
    }
    assert addresses(ask(f"ns1.{ORIGIN}")) == ["127.0.0.1"]


def test_srv_and_txt() -> None:
    response = ask(f"_http._tcp.app.{ORIGIN}", "SRV", client=US)
    (rd,) = response.answer[0]
    assert (rd.port, rd.target.to_text()) == (8080, f"us-east-1.app.{ORIGIN}.")
    assert addresses(ask(f"us-east-1.app.{ORIGIN}")) == [US_V4]
    txt = ask(f"_ubiq.app.{ORIGIN}", "TXT", client=EU).answer[0]
    assert "group=eu" in txt.to_text() and "regions=eu-west" in txt.to_text()


def test_cname_is_followed_inside_the_zone() -> None:
    response = ask(f"www.{ORIGIN}", client=US)
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert addresses(response) == [US_V4]
    assert ask(f"www.{ORIGIN}", "CNAME").answer[0].rdtype == dns.rdatatype.CNAME
    assert ask(f"www.{ORIGIN}", "TXT").answer[0].rdtype == dns.rdatatype.CNAME
    ext = ask(f"ext.{ORIGIN}")
    assert ext.rcode() == dns.rcode.NOERROR and len(ext.answer) == 1


def test_servfail_when_decision_says_so() -> None:
    assert ask(f"down.{ORIGIN}").rcode() == dns.rcode.SERVFAIL


def test_any_is_minimal() -> None:
    response = ask(f"static.{ORIGIN}", "ANY")
    (hinfo,) = response.answer
    assert hinfo.rdtype == dns.rdatatype.HINFO and "RFC8482" in hinfo.to_text()
    assert ask(f"nothing.{ORIGIN}", "ANY").rcode() == dns.rcode.NXDOMAIN


def test_truncation_without_edns_and_full_answer_over_tcp() -> None:
    response = ask(f"big.{ORIGIN}", "TXT")
    assert response.flags & dns.flags.TC and not response.answer
    tcp = ask(f"big.{ORIGIN}", "TXT", client=Client(OTHER.host, tcp=True))
    assert not tcp.flags & dns.flags.TC and tcp.answer
    large = ask(f"big.{ORIGIN}", "TXT", use_edns=0, payload=4096)
    assert not large.flags & dns.flags.TC
    small = ask(f"big.{ORIGIN}", "TXT", use_edns=0, payload=100)  # below 512 counts as 512
    assert small.flags & dns.flags.TC and small.edns == 0


def test_badvers() -> None:
    response = ask(f"app.{ORIGIN}", use_edns=1)
    assert response.rcode() == dns.rcode.BADVERS
    assert response.edns == 0


def test_notimp_for_other_opcodes() -> None:
    query = dns.message.make_query(f"app.{ORIGIN}", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    wire = answer(query.to_wire(), TABLE, EU)
    assert wire is not None
    assert dns.message.from_wire(wire).rcode() == dns.rcode.NOTIMP


def test_responses_and_short_messages_are_dropped() -> None:
    query = dns.message.make_query(f"app.{ORIGIN}", "A")
    query.flags |= dns.flags.QR
    assert answer(query.to_wire(), TABLE, EU) is None
    assert answer(b"\x12\x34\x01", TABLE, EU) is None


def test_formerr_for_two_questions_and_garbage() -> None:
    wire = dns.message.make_query(f"app.{ORIGIN}", "A").to_wire()
    two = wire[:4] + b"\x00\x02" + wire[6:] + wire[12:]
    reply = answer(two, TABLE, EU)
    assert reply is not None and reply[:2] == wire[:2] and reply[3] & 0x0F == dns.rcode.FORMERR
    reply = answer(wire[:12] + b"\x05ab", TABLE, EU)
    assert reply is not None and reply[3] & 0x0F == dns.rcode.FORMERR


def test_compression_loop_in_question_is_formerr() -> None:
    header = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    loop = header + b"\xc0\x0c\x00\x01\x00\x01"  # pointer to itself: a loop
    reply = answer(loop, TABLE, EU)
    assert reply is not None and reply[3] & 0x0F == dns.rcode.FORMERR


def test_edns_answer_carries_our_opt() -> None:
    response = ask(f"app.{ORIGIN}", client=EU, use_edns=0, payload=4096, want_dnssec=True)
    assert response.edns == 0 and response.payload == TABLE.udp_size
    assert not response.ednsflags & dns.flags.DO
    assert addresses(response) == [EU_V4]


def test_unknown_edns_options_are_ignored() -> None:
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")
    assert addresses(ask(f"app.{ORIGIN}", client=EU, use_edns=0, options=[cookie])) == [EU_V4]


def test_zone_transfer_only_for_allowed_clients_over_tcp() -> None:
    assert ask(ORIGIN, "AXFR", client=Client("127.0.0.2", tcp=True)).rcode() == dns.rcode.REFUSED
    assert ask(ORIGIN, "AXFR", client=Client("127.0.0.9")).flags & dns.flags.TC
    query = dns.message.make_query(ORIGIN, "AXFR")
    wire = answer(query.to_wire(), TABLE, Client("127.0.0.9", tcp=True))
    assert wire is not None
    response = dns.message.from_wire(wire, one_rr_per_rrset=True)
    soa = dns.rdatatype.SOA
    assert response.answer[0].rdtype == soa and response.answer[-1].rdtype == soa
    assert any(r.name.to_text() == f"app.{ORIGIN}." for r in response.answer)
    assert (
        ask(f"app.{ORIGIN}", "AXFR", client=Client("127.0.0.9", tcp=True)).rcode()
        == dns.rcode.NOTAUTH
    )


def test_table_rejects_inconsistent_input() -> None:
    zone = Zone(ORIGIN, (f"ns1.{ORIGIN}",))
    groups = ClientGroups()
    with pytest.raises(GtmError, match="in none of the zones"):
        AnswerTable.build(
            [zone], [Decision("app.other.example", "default", ("192.0.2.1",))], groups
        )
    bad = Zone(
        ORIGIN,
        (f"ns1.{ORIGIN}",),
        records=(
            StaticRecord(f"a.{ORIGIN}", "CNAME", "b."),
            StaticRecord(f"a.{ORIGIN}", "A", "192.0.2.1"),
        ),
    )
    with pytest.raises(GtmError, match="CNAME"):
        AnswerTable.build([bad], [], groups)
    with pytest.raises(GtmError, match="bad rdata"):
        Zone(ORIGIN, (f"ns1.{ORIGIN}",), records=(StaticRecord(f"a.{ORIGIN}", "A", "not-an-ip"),))


def test_group_independent_names_stored_once() -> None:
    static = TABLE.exact[(b"\x06static\x03gtm\x07example\x00", 1)]
    assert not isinstance(static, dict)
    steered = TABLE.exact[(b"\x03app\x03gtm\x07example\x00", 1)]
    assert isinstance(steered, dict) and set(steered) == {"eu", "us", "default"}


def test_client_groups_longest_prefix_match() -> None:
    net = ipaddress.ip_network
    groups = ClientGroups(
        [ClientGroup("wide", (net("10.0.0.0/8"),)), ClientGroup("narrow", (net("10.1.2.0/24"),))]
    )
    assert groups.lookup("10.1.2.3") == "narrow"
    assert groups.lookup("10.9.9.9") == "wide"
    assert groups.lookup("11.0.0.1") == "default"
    assert (
        groups.lookup_v4(int(ipaddress.IPv4Address("10.1.2.0")), 16) == "wide"
    )  # /16 ECS: /24 too specific
    assert groups.lookup("::ffff:10.1.2.3") == "narrow"  # mapped v4 uses the v4 table
    assert groups.lookup("not an address") == "default"
    assert groups.names == ("wide", "narrow", "default")
