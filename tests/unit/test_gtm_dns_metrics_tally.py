"""``metrics.tally`` (kept with a packet-cache entry, counted on every hit) counts exactly what
the old per-query parse counted: for any response bytes, and for the server's real responses,
their truncated (RRL slip) forms and the same bytes under another ID."""

from __future__ import annotations

import dns.edns
import dns.message
import dns.rdatatype
from hypothesis import given
from hypothesis import strategies as st

from controlplane.gtm.dns.answer import Client, answer
from controlplane.gtm.dns.metrics import DnsMetrics, tally
from controlplane.gtm.dns.rrl import truncate
from tests.support.dns import ORIGIN, sample_table
from tests.support.dns_metrics_reference import ReferenceCounts
from tests.support.fuzz import fuzz_settings

TABLE = sample_table()
NAMES = [f"app.{ORIGIN}", f"big.{ORIGIN}", f"www.{ORIGIN}", f"missing.{ORIGIN}", ORIGIN, "x.test"]
TYPES = ["A", "AAAA", "TXT", "SRV", "NS", "SOA", "ANY", "MX", "CNAME", "CAA", "TYPE777"]
HOSTS = ["127.0.0.2", "127.0.0.3", "::1"]


def same_counts(responses: list[bytes | None]) -> None:
    """Counted through ``count(tally(...))`` (``observe`` for None) and by the reference."""
    metrics, reference = DnsMetrics(), ReferenceCounts()
    for response in responses:
        reference.observe("udp", response)
        if response is None:
            metrics.observe("udp", None, 0.0)
        else:
            metrics.count(tally("udp", response), 0.00003)
    assert metrics.responses == reference.responses
    assert metrics.dropped == reference.dropped
    assert metrics.truncated == reference.truncated
    assert {q: int(sum(b[:-1])) for q, b in metrics._buckets.items()} == reference.durations


@fuzz_settings(400)
@given(st.lists(st.binary(min_size=12, max_size=300), max_size=8))
def test_any_bytes(responses: list[bytes]) -> None:
    same_counts(list(responses))


@fuzz_settings(300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(NAMES),
            st.sampled_from(TYPES),
            st.sampled_from(HOSTS),
            st.sampled_from([None, "10.1.0.0/24", "2001:db8::/56", "192.0.2.0/32"]),
            st.booleans(),
            st.integers(0, 0xFFFF),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_server_responses_slipped_and_reused(
    steps: list[tuple[str, str, str, str | None, bool, int]],
) -> None:
    responses: list[bytes | None] = []
    for name, rtype, host, subnet, edns, qid in steps:
        options: list[dns.edns.Option] = []
        if subnet is not None:
            address, _, prefix = subnet.partition("/")
            options.append(dns.edns.ECSOption(address, int(prefix)))
        query = dns.message.make_query(
            name,
            dns.rdatatype.from_text(rtype),
            use_edns=0 if edns or options else None,
            options=options,
        ).to_wire()
        response = answer(query, TABLE, Client(host))
        responses.append(response)
        if response is not None:
            responses.append(truncate(response))
            responses.append(qid.to_bytes(2) + response[2:])  # a cache hit's bytes
    same_counts(responses)
