"""Valid DNS queries and ways to break them, for fuzzing the answer path and a live server."""

from __future__ import annotations

import random

import dns.edns
import dns.message

from tests.support.dns import ORIGIN

NAMES = [f"app.{ORIGIN}", f"big.{ORIGIN}", f"www.{ORIGIN}", f"nope.{ORIGIN}", ORIGIN, "x.test"]
TYPES = ["A", "AAAA", "TXT", "SRV", "NS", "SOA", "ANY", "AXFR", "IXFR", "MX", "CAA", "OPT"]


def valid_query(rng: random.Random) -> bytes:
    name = rng.choice(NAMES)
    options: list[dns.edns.Option] = []
    if rng.random() < 0.3:
        options.append(
            dns.edns.ECSOption(rng.choice(["10.1.2.3", "2001:db8:e::1"]), rng.randint(0, 32))
        )
    if rng.random() < 0.2:
        options.append(dns.edns.GenericOption(10, rng.randbytes(rng.choice([8, 16, 24]))))  # cookie
    query = dns.message.make_query(
        name,
        rng.choice(TYPES),
        use_edns=rng.choice([None, 0, 0, 1]) if not options else 0,
        payload=rng.randint(0, 65535),
        want_dnssec=rng.random() < 0.2,
        options=options,
    )
    return query.to_wire()


def mutate(data: bytes, rng: random.Random, steps: int) -> bytes:
    """``data`` with ``steps`` random edits: bit flips, byte sets, cuts, insertions, repeats."""
    out = bytearray(data)
    for _ in range(steps):
        what = rng.randrange(6)
        at = rng.randrange(len(out) + 1)
        if what == 0 and out:
            out[at % len(out)] ^= 1 << rng.randrange(8)
        elif what == 1 and out:
            out[at % len(out)] = rng.choice(
                [0, 1, 0x3F, 0x40, 0xC0, 0xC0 | 12, 0xFF, rng.randrange(256)]
            )
        elif what == 2:
            del out[at:]
        elif what == 3:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif what == 4 and len(out) > 12:
            start = rng.randrange(12, len(out))
            out[at:at] = out[start : start + rng.randint(1, 40)]
        elif what == 5 and len(out) >= 12:
            i = rng.choice([4, 6, 8, 10])
            out[i : i + 2] = rng.randrange(65536).to_bytes(2)
    return bytes(out)


def fuzzed_query(rng: random.Random) -> bytes:
    base = valid_query(rng)
    return (
        mutate(base, rng, rng.randint(0, 4))
        if rng.random() < 0.9
        else rng.randbytes(rng.randint(0, 80))
    )
