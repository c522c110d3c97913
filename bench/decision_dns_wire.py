"""Decision: a precomputed wire-answer table, not dnspython per query (docs/decisions.md).

Both sides answer the same A query for a steered name, in process, no sockets: dnspython parses
the query, builds a response, adds the answer RRset and renders it (what a dnspython-based
server does per query); Ubiq's ``answer()`` looks the query up in an ``AnswerTable`` built once
and splices bytes. Both responses are checked to carry the same answer before timing.

    .venv/bin/python -m bench.decision_dns_wire [--queries 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import ipaddress

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset

from bench._common import best_of, save
from controlplane.gtm.dns.answer import Client, answer
from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.zone import Zone
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.types import ClientGroup, Decision, SteeringPolicy, Target

NAME = "app.bench.example"
ADDRESSES = ("192.0.2.10", "192.0.2.11")


def table() -> AnswerTable:
    groups = ClientGroups([ClientGroup("eu", (ipaddress.ip_network("10.1.0.0/16"),))])
    targets = tuple(Target(f"c{i}", "eu", a, 80) for i, a in enumerate(ADDRESSES))
    policy = SteeringPolicy(
        name=NAME, zone="bench.example", strategy="failover", targets=targets, ttl=60
    )
    decisions = [Decision(NAME, g, ADDRESSES) for g in ("eu", "default")]
    zone = Zone("bench.example", ("ns1.bench.example",), glue={"ns1.bench.example": ("127.0.0.1",)})
    return AnswerTable.build([zone], decisions, groups, [policy])


def dnspython_answer(query: bytes, rrset: dns.rrset.RRset) -> bytes:
    """What a dnspython-based authoritative server does for each query."""
    msg = dns.message.from_wire(query)
    response = dns.message.make_response(msg)
    response.flags |= dns.flags.AA
    response.answer.append(rrset)
    return response.to_wire()


def addresses(wire: bytes) -> set[str]:
    msg = dns.message.from_wire(wire)
    return {r.address for rrset in msg.answer for r in rrset}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    query = dns.message.make_query(NAME, "A", use_edns=0).to_wire()
    rrset = dns.rrset.from_text(NAME + ".", 60, "IN", "A", *ADDRESSES)
    answers = table()
    client = Client("10.1.2.3")
    ours = answer(query, answers, client)
    assert ours is not None
    assert addresses(ours) == addresses(dnspython_answer(query, rrset)) == set(ADDRESSES)

    n = args.queries
    fast = best_of(lambda: [answer(query, answers, client) for _ in range(n)], args.repeat)
    slow = best_of(lambda: [dnspython_answer(query, rrset) for _ in range(n)], args.repeat)
    rows = [
        {"case": "answer() from the precomputed table (baseline)", "seconds": fast, "ratio": 1.0},
        {"case": "dnspython message per query", "seconds": slow, "ratio": slow / fast},
    ]
    print(f"{n} A queries with EDNS, best of {args.repeat}")
    print(f"{'case':<48} {'seconds':>9} {'queries/s':>11} {'ratio':>7}")
    for row in rows:
        qps = n / row["seconds"]
        print(f"{row['case']:<48} {row['seconds']:>9.3f} {qps:>11,.0f} {row['ratio']:>6.1f}x")
    save("decision_dns_wire", args, rows=rows)


if __name__ == "__main__":
    main()
