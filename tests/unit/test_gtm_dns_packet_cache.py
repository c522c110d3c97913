"""The packet cache gives exactly what answer() gives, for the table that serves, within its
byte bound."""

from __future__ import annotations

import dns.edns
import dns.message
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.gtm.dns.answer import Client, answer
from controlplane.gtm.dns.packet_cache import MAX_QUERY_BYTES, PacketCache
from tests.support.dns import ORIGIN, sample_table

TABLES = [sample_table(generation=1), sample_table(generation=2, nameserver_ip="127.0.0.5")]
HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.9", "10.1.2.3", "10.2.3.4"]
NAMES = [
    f"app.{ORIGIN}",
    f"APP.{ORIGIN}",
    f"www.{ORIGIN}",
    f"missing.{ORIGIN}",
    ORIGIN,
    f"ns1.{ORIGIN}",
    "x.test",
]
TYPES = ["A", "AAAA", "SOA", "NS", "TXT", "ANY"]
SUBNETS = [None, "10.1.0.0/24", "10.2.0.0/24", "192.0.2.0/24"]


def query(qid: int, name: str, qtype: str, subnet: str | None, edns: bool, rd: bool) -> bytes:
    options = [dns.edns.ECSOption.from_text(subnet)] if subnet else []
    msg = dns.message.make_query(
        name, qtype, use_edns=0 if (edns or subnet) else None, options=options
    )
    msg.id = qid
    if not rd:
        msg.flags &= ~dns.flags.RD
    return msg.to_wire()


queries = st.builds(
    query,
    st.integers(0, 0xFFFF),
    st.sampled_from(NAMES),
    st.sampled_from(TYPES),
    st.sampled_from(SUBNETS),
    st.booleans(),
    st.booleans(),
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(queries, min_size=1, max_size=4),
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 0xFFFF), st.integers(0, 2), st.integers(0, 1)),
        max_size=40,
    ),
)
def test_cached_answers_equal_answer(
    pool: list[bytes], steps: list[tuple[int, int, int, int]]
) -> None:
    """Queries repeated with new IDs from several sources across table swaps: the cache's
    response is always answer()'s for the table that serves."""
    cache: PacketCache[None] = PacketCache()
    for index, qid, source, which in steps:
        wire = qid.to_bytes(2) + pool[index % len(pool)][2:]
        host, table = HOSTS[source], TABLES[which]
        expected = answer(wire, table, Client(host))
        got = cache.get(wire, host, table)
        if got is None:
            got = answer(wire, table, Client(host))
            if got is not None:
                cache.put(wire, host, table, got, None)
        assert got == expected


def test_a_repeated_query_hits_and_a_new_table_empties_the_cache() -> None:
    cache: PacketCache[None] = PacketCache()
    first = query(1, f"app.{ORIGIN}", "A", "10.1.0.0/24", True, True)
    again = query(2, f"app.{ORIGIN}", "A", "10.1.0.0/24", True, True)
    response = answer(first, TABLES[0], Client("127.0.0.2"))
    assert response is not None
    assert cache.get(first, "127.0.0.2", TABLES[0]) is None
    cache.put(first, "127.0.0.2", TABLES[0], response, None)
    hit = cache.get(again, "127.0.0.2", TABLES[0])
    assert hit is not None and hit[:2] == again[:2] and hit[2:] == response[2:]
    assert cache.get(again, "127.0.0.3", TABLES[0]) is None  # another source: its own entry
    assert (cache.hits, cache.misses) == (1, 2)
    assert cache.get(again, "127.0.0.2", TABLES[1]) is None  # a new table
    assert len(cache) == 0 and cache.size_bytes == 0


def test_bounded_in_bytes_and_oversized_entries_are_not_kept() -> None:
    cache: PacketCache[None] = PacketCache(max_bytes=4096)
    table = TABLES[0]
    cache.get(b"", "h", table)  # binds the table
    for i in range(200):
        wire = query(i, f"n{i}.{ORIGIN}", "A", None, False, True)
        cache.put(wire, "127.0.0.2", table, wire[:2] + b"\x81\x80" + bytes(40), None)
        assert cache.size_bytes <= 4096
    assert cache.clears > 0 and len(cache) > 0
    big = bytes(2) + bytes(MAX_QUERY_BYTES)
    before = len(cache)
    cache.put(big, "127.0.0.2", table, big[:2] + b"\x81\x80", None)
    wire = query(7, f"app.{ORIGIN}", "A", None, False, True)
    cache.put(wire, "127.0.0.2", table, wire[:2] + bytes(2000), None)
    cache.put(wire, "127.0.0.2", table, b"\xff\xff" + bytes(20), None)  # not this query's ID
    assert len(cache) == before
