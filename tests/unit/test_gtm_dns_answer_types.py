"""Data types past 255, ECS scope, the _ubiq TXT scope and oversized zones (no sockets)."""

from __future__ import annotations

import ipaddress

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from controlplane.errors import GtmError
from controlplane.gtm.dns.answer import Client, Transfer, answer
from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.transfer import chunks as transfer_chunks
from controlplane.gtm.dns.zone import StaticRecord, Zone, parse_rdata
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.types import ClientGroup, Decision
from tests.support.dns import ORIGIN, sample_table

TABLE = sample_table(allow_transfer=["127.0.0.9/32"])
OTHER = Client("192.0.2.77")
TRANSFER = Client("127.0.0.9", tcp=True)


def ask(
    name: str, rtype: str | int, table: AnswerTable = TABLE, client: Client = OTHER, **kw: object
) -> dns.message.Message:
    query = dns.message.make_query(name, rtype, **kw)  # type: ignore[arg-type]
    wire = answer(query.to_wire(), table, client)
    assert wire is not None
    return dns.message.from_wire(wire)


@pytest.mark.parametrize("rtype", ["CAA", "URI", "TA", "TYPE65280", 65535])
def test_data_types_past_255_are_nodata_or_nxdomain(rtype: str | int) -> None:
    for name in (f"static.{ORIGIN}", f"app.{ORIGIN}", ORIGIN):
        response = ask(name, rtype)
        assert response.rcode() == dns.rcode.NOERROR
        assert not response.answer
        assert [r.rdtype for r in response.authority] == [dns.rdatatype.SOA]
    missing = ask(f"missing.{ORIGIN}", rtype)
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert [r.rdtype for r in missing.authority] == [dns.rdatatype.SOA]
    assert ask("elsewhere.test", rtype).rcode() == dns.rcode.REFUSED


def test_meta_types_keep_their_special_answers() -> None:
    assert ask(f"static.{ORIGIN}", "MAILB").rcode() == dns.rcode.NOTIMP
    assert ask(ORIGIN, "AXFR").rcode() == dns.rcode.REFUSED


def echo_scope(name: str, address: str, source: int) -> int:
    option = dns.edns.ECSOption(address, source)
    (echo,) = ask(name, "A", use_edns=0, options=[option]).options
    assert isinstance(echo, dns.edns.ECSOption)
    return int(echo.scopelen)


@pytest.mark.parametrize(
    ("address", "source", "scope"),
    [
        ("10.0.0.0", 8, 16),  # eu 10.1/16 and us 10.2/16 lie inside 10/8
        ("10.2.3.0", 24, 24),
        ("10.3.0.0", 16, 16),  # no group inside: the source prefix
        ("0.0.0.0", 0, 0),
        ("2001:db8::", 32, 48),  # eu 2001:db8:e::/48
    ],
)
def test_ecs_scope_covers_longer_group_prefixes(address: str, source: int, scope: int) -> None:
    assert echo_scope(f"app.{ORIGIN}", address, source) == scope


def test_ubiq_txt_is_client_dependent_when_groups_differ() -> None:
    option = dns.edns.ECSOption("10.2.3.0", 24)
    response = ask(f"_ubiq.same.{ORIGIN}", "TXT", use_edns=0, options=[option])
    assert b"group=us" in response.answer[0][0].to_wire()
    assert response.options[0].scopelen == 24
    assert echo_scope(f"same.{ORIGIN}", "10.2.3.0", 24) == 0  # the addresses are uniform


def test_client_groups_longest_prefix_within() -> None:
    net = ipaddress.ip_network
    groups = ClientGroups(
        [ClientGroup("a", (net("10.1.2.0/24"), net("10.1.0.0/16"))), ClientGroup("b", ())]
    )
    v4 = int(ipaddress.IPv4Address("10.1.0.0"))
    assert groups.scope_v4(v4, 8) == 24
    assert groups.scope_v4(v4, 24) == 24
    assert groups.scope_v4(int(ipaddress.IPv4Address("10.1.3.0")), 24) == 24
    assert groups.scope_v4(int(ipaddress.IPv4Address("11.0.0.0")), 8) == 8
    assert groups.scope_v4(0, 0) == 24


def big_zone(names: int) -> Zone:
    reason = "x" * 250
    records = tuple(
        StaticRecord(f"n{i}.{ORIGIN}", "TXT", f'"{reason}" "down: {i}"') for i in range(names)
    )
    return Zone(ORIGIN, (f"ns1.{ORIGIN}",), records=records)


def test_zone_transfer_over_64k_is_several_messages_bracketed_by_the_soa() -> None:
    zone = big_zone(600)  # ~ 160 KB of TXT
    allowed = [ipaddress.ip_network("127.0.0.9/32")]
    table = AnswerTable.build([zone], [], ClientGroups(), allow_transfer=allowed)
    query = dns.message.make_query(ORIGIN, "AXFR", use_edns=0)
    response = answer(query.to_wire(), table, TRANSFER)
    assert isinstance(response, Transfer) and len(response.messages) >= 3
    assert bytes(response) == response.messages[0]
    messages = [dns.message.from_wire(m) for m in response.messages]
    assert all(m.id == query.id and m.rcode() == dns.rcode.NOERROR for m in messages)
    assert all(len(m) <= 65535 for m in response.messages)
    records = [(r.name, r.rdtype, rd) for m in messages for r in m.answer for rd in r]
    assert records[0][1] == records[-1][1] == dns.rdatatype.SOA
    assert sum(rtype == dns.rdatatype.SOA for _, rtype, _ in records) == 2
    txt = {name.to_text() for name, rtype, _ in records if rtype == dns.rdatatype.TXT}
    assert txt == {f"n{i}.{ORIGIN}." for i in range(600)}
    over_udp = ask(ORIGIN, "AXFR", table, Client("127.0.0.9"))
    assert over_udp.flags & dns.flags.TC and not over_udp.answer
    assert ask(f"n7.{ORIGIN}", "TXT", table).rcode() == dns.rcode.NOERROR
    small = AnswerTable.build([big_zone(3)], [], ClientGroups(), allow_transfer=allowed)
    single = answer(query.to_wire(), small, TRANSFER)
    assert type(single) is bytes and dns.message.from_wire(single).rcode() == dns.rcode.NOERROR


def test_one_rrset_over_64k_is_split_across_transfer_messages() -> None:
    records = tuple(StaticRecord(f"huge.{ORIGIN}", "TXT", f'"{"y" * 250}-{i}"') for i in range(300))
    zone = Zone(ORIGIN, (f"ns1.{ORIGIN}",), records=records)
    chunks = transfer_chunks(_huge_rrsets(zone), 65000)
    assert len(chunks) == 2 and sum(len(r) for c in chunks for r in c) == 300


def _huge_rrsets(zone: Zone) -> list[dns.rrset.RRset]:
    rdatas = [parse_rdata(r) for r in zone.records]
    return [dns.rrset.from_rdata_list(f"huge.{ORIGIN}.", 60, rdatas)]


def test_no_transfers_built_without_allowed_networks() -> None:
    table = AnswerTable.build([big_zone(300)], [], ClientGroups())
    assert table.transfers == {}
    assert ask(ORIGIN, "AXFR", table, TRANSFER).rcode() == dns.rcode.REFUSED


def test_answer_over_64k_is_a_gtm_error() -> None:
    records = tuple(StaticRecord(f"huge.{ORIGIN}", "TXT", f'"{"y" * 250}-{i}"') for i in range(300))
    with pytest.raises(GtmError, match="64 KiB"):
        AnswerTable.build([Zone(ORIGIN, (f"ns1.{ORIGIN}",), records=records)], [], ClientGroups())


def test_steered_txt_survives_long_and_unicode_reasons() -> None:
    zone = Zone(ORIGIN, (f"ns1.{ORIGIN}",))
    reasons = ("é" * 200, 'quote " and \\ backslash')
    table = AnswerTable.build(
        [zone],
        [Decision(f"app.{ORIGIN}", "default", ("192.0.2.1",), reasons=reasons)],
        ClientGroups(),
    )
    (rrset,) = ask(f"_ubiq.app.{ORIGIN}", "TXT", table).answer
    strings = rrset[0].strings
    assert strings[0] == b"group=default" and len(strings[2]) == 255
    assert strings[3] == b'quote " and \\ backslash'
