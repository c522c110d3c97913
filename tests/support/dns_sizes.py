"""A zone whose answers straddle every UDP size a client may advertise: TXT records from 300 to
3,000 bytes, A/AAAA RRsets of 10 to 120 records, and a steered name answering 60 addresses."""

from __future__ import annotations

import ipaddress

from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.zone import StaticRecord, Zone
from controlplane.gtm.types import Decision
from tests.support.dns import ORIGIN, sample_groups

TXT_SIZES = (300, 480, 700, 1000, 1200, 1500, 3000)
RRSET_SIZES = (10, 30, 60, 120)


def txt(size: int) -> str:
    strings, left, i = [], size, 0
    while left > 0:
        chunk = min(left, 250)
        strings.append(f'"{chr(97 + i % 26) * chunk}"')
        left -= chunk
        i += 1
    return " ".join(strings)


def size_records() -> tuple[StaticRecord, ...]:
    records = [StaticRecord(f"txt{n}.{ORIGIN}", "TXT", txt(n)) for n in TXT_SIZES]
    for n in RRSET_SIZES:
        records += [
            StaticRecord(f"a{n}.{ORIGIN}", "A", f"10.9.{i // 250}.{i % 250 + 1}") for i in range(n)
        ]
        records += [
            StaticRecord(
                f"a{n}.{ORIGIN}", "AAAA", str(ipaddress.ip_address("2001:db8:9::") + i + 1)
            )
            for i in range(n)
        ]
    return tuple(records)


def size_names() -> list[tuple[str, str]]:
    """(name, type) of every big answer, the steered one included."""
    names = [(f"txt{n}.{ORIGIN}", "TXT") for n in TXT_SIZES]
    names += [(f"a{n}.{ORIGIN}", t) for n in RRSET_SIZES for t in ("A", "AAAA")]
    return [*names, (f"wide.{ORIGIN}", "A")]


def size_table(udp_size: int = 1232) -> AnswerTable:
    zone = Zone(
        origin=ORIGIN,
        nameservers=(f"ns1.{ORIGIN}",),
        glue={f"ns1.{ORIGIN}": ("127.0.0.1",)},
        records=size_records(),
    )
    wide = tuple(f"198.51.{i // 200}.{i % 200 + 1}" for i in range(60))
    decisions = [
        Decision(f"wide.{ORIGIN}", "eu", wide[:40], regions=("eu-west",)),
        Decision(f"wide.{ORIGIN}", "default", wide, regions=("eu-west", "us-east")),
    ]
    return AnswerTable.build([zone], decisions, sample_groups(), udp_size=udp_size)
