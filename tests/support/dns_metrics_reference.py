"""The per-query counting of ``DnsMetrics.observe`` as it was before the packet cache kept a
tally per entry (commit 468f13a), frozen here: the reference the differential tests compare the
server's counts with. Nothing here imports the code under test's parsing."""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.gtm.dns.metrics import OTHER_QTYPE, QTYPES

Key = tuple[str, int, int, bytes | None]


@dataclass
class ReferenceCounts:
    responses: dict[Key, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    durations: dict[int, int] = field(default_factory=dict)  # qtype -> observations

    def observe(self, transport: str, response: bytes | None) -> None:
        """Count one query: ``response`` as sent (None: nothing sent)."""
        if response is None:
            self.dropped[transport] = self.dropped.get(transport, 0) + 1
            return
        qtype, end = _question(response)
        rcode = response[3] & 0x0F
        address = None
        if rcode == 0 and end and (response[7] or response[6]):
            i = end + 5
            if (
                len(response) >= i + 16
                and response[i] == 0xC0
                and response[i + 2 : i + 4] == b"\x00\x01"
            ):
                address = response[i + 12 : i + 16]
            else:
                address = _first_address(response, i)
        key = (transport, qtype if qtype in QTYPES else OTHER_QTYPE, rcode, address)
        self.responses[key] = self.responses.get(key, 0) + 1
        if response[2] & 0x02:
            self.truncated += 1
        self.durations[key[1]] = self.durations.get(key[1], 0) + 1


def _question(response: bytes) -> tuple[int, int]:
    if response[4:6] != b"\x00\x01":
        return 0, 0
    i, n = 12, len(response)
    while i < n and 0 < response[i] < 64:
        i += response[i] + 1
    if i + 2 < n and response[i] == 0:
        return (response[i + 1] << 8) | response[i + 2], i
    return 0, 0


def _first_address(response: bytes, i: int) -> bytes | None:
    n = len(response)
    for _ in range(min((response[6] << 8) | response[7], 8)):
        if i >= n:
            return None
        if response[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while i < n and 0 < response[i] < 64:
                i += response[i] + 1
            i += 1
        if i + 10 > n:
            return None
        rtype = (response[i] << 8) | response[i + 1]
        length = (response[i + 8] << 8) | response[i + 9]
        i += 10
        if (rtype == 1 and length == 4) or (rtype == 28 and length == 16):
            return response[i : i + length] if i + length <= n else None
        i += length
    return None
