"""Mutated valid queries (EDNS, ECS, cookies, DO, transfers) into answer() as UDP, TCP and an
allowed-transfer client: always a protocol-correct reply (dnspython parses it; same ID; QR set;
a truncated reply carries no records; UDP within 512 or the EDNS size) or, for a response or a
runt, nothing."""

from __future__ import annotations

import random

import dns.flags
import dns.message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.gtm.dns.answer import Client, Transfer, answer
from tests.support.dns import sample_table
from tests.support.dns_mutate import fuzzed_query

TABLE = sample_table(allow_transfer=["127.0.0.9/32"])
CLIENTS = [Client("192.0.2.1"), Client("127.0.0.2", True), Client("127.0.0.9", True), Client("::1")]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def protocol_correct(query: bytes, reply: bytes | None, client: Client) -> None:
    if reply is None:
        assert len(query) < 12 or query[2] & 0x80
        return
    messages = reply.messages if type(reply) is Transfer else (bytes(reply),)
    for wire in messages:
        parsed = dns.message.from_wire(wire)
        assert wire[:2] == query[:2] and parsed.flags & dns.flags.QR
        if parsed.flags & dns.flags.TC:
            assert not parsed.answer and not parsed.authority
    if not client.tcp:
        assert len(reply) <= 1232


@FUZZ
@given(st.integers(0, 2**64), st.sampled_from(CLIENTS))
def test_mutated_queries_get_protocol_correct_replies(seed: int, client: Client) -> None:
    query = fuzzed_query(random.Random(seed))
    protocol_correct(query, answer(query, TABLE, client), client)
