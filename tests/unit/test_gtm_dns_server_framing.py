"""DNS-over-TCP framing (RFC 7766), fed one byte at a time, without sockets."""

from __future__ import annotations

import dns.message

from controlplane.gtm.dns.answer import Client, answer
from controlplane.gtm.dns.server import TcpFramer, frame
from tests.support.dns import ORIGIN, sample_table

TABLE = sample_table()


def test_one_byte_at_a_time_with_pipelined_queries() -> None:
    queries = [dns.message.make_query(f"{n}.{ORIGIN}", "A") for n in ("app", "static", "missing")]
    stream = b"".join(frame(q.to_wire()) for q in queries)
    framer = TcpFramer()
    received: list[bytes] = []
    for i in range(len(stream)):
        received += framer.feed(stream[i : i + 1])
    assert received == [q.to_wire() for q in queries]
    assert framer.pending == 0
    replies = [answer(m, TABLE, Client("127.0.0.3", tcp=True)) for m in received]
    assert [dns.message.from_wire(r).id for r in replies if r] == [q.id for q in queries]


def test_partial_length_prefix_and_several_messages_in_one_chunk() -> None:
    framer = TcpFramer()
    assert framer.feed(b"\x00") == []
    assert framer.feed(b"\x03ab") == []
    assert framer.pending == 4
    assert framer.feed(b"c\x00\x01z\x00") == [b"abc", b"z"]
    assert framer.pending == 1
    assert framer.feed(b"\x00") == [b""]


def test_large_answer_is_not_truncated_over_tcp() -> None:
    query = dns.message.make_query(f"big.{ORIGIN}", "TXT")
    reply = answer(query.to_wire(), TABLE, Client("127.0.0.3", tcp=True))
    assert reply is not None and len(reply) > 512
    framed = frame(reply)
    assert int.from_bytes(framed[:2]) == len(reply)
