"""The DNS server's own metrics, on an explicit prometheus-client registry.

The hot path only bumps plain dict counters and a bucket list (no locks, no label lookups); a
collector turns them into metric families at scrape time and reads the table gauges from the
live table, so a scrape always sees one table generation.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from controlplane.gtm.dns.rcodes import LABELS as RCODE_LABELS

# The qtype label's values: any other number a client sends is counted as OTHER (a label per
# number would let clients create 65536 series).
QTYPES = {
    0: "NONE",  # no question (FORMERR and the like)
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    13: "HINFO",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    35: "NAPTR",
    43: "DS",
    46: "RRSIG",
    48: "DNSKEY",
    50: "NSEC3",
    52: "TLSA",
    64: "SVCB",
    65: "HTTPS",
    99: "SPF",
    251: "IXFR",
    252: "AXFR",
    255: "ANY",
    257: "CAA",
}
OTHER_QTYPE = -1
LATENCY_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005)


class TableInfo(Protocol):
    """What the gauges read from the live table."""

    @property
    def generation(self) -> int: ...
    @property
    def size(self) -> int: ...


class DnsMetrics(Collector):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # (transport, qtype or OTHER_QTYPE, rcode) -> n; rcode is 4 bits, so at most 16 of them
        self.responses: dict[tuple[str, int, int], int] = {}
        self.dropped: dict[str, int] = {}
        self.truncated = 0
        self.tcp_connections = 0
        self.tcp_rejected = 0
        self.tcp_shed = 0
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._table: Callable[[], TableInfo] | None = None
        if registry is not None:
            registry.register(self)

    def watch_table(self, table: Callable[[], TableInfo]) -> None:
        self._table = table

    def observe(self, transport: str, response: bytes | None, seconds: float) -> None:
        if response is None:
            self.dropped[transport] = self.dropped.get(transport, 0) + 1
            return
        qtype = _qtype(response)
        key = (transport, qtype if qtype in QTYPES else OTHER_QTYPE, response[3] & 0x0F)
        self.responses[key] = self.responses.get(key, 0) + 1
        if response[2] & 0x02:
            self.truncated += 1
        self._buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds

    def collect(self) -> Iterator[Metric]:
        queries = CounterMetricFamily(
            "ubiq_dns_responses", "DNS responses sent", labels=["transport", "qtype", "rcode"]
        )
        for (transport, qtype, rcode), n in sorted(self.responses.items()):
            queries.add_metric(
                [transport, QTYPES.get(qtype, "OTHER"), RCODE_LABELS.get(rcode, str(rcode))], n
            )
        yield queries
        dropped = CounterMetricFamily(
            "ubiq_dns_dropped", "Queries dropped without a response", labels=["transport"]
        )
        for transport, n in sorted(self.dropped.items()):
            dropped.add_metric([transport], n)
        yield dropped
        yield CounterMetricFamily(
            "ubiq_dns_truncated", "UDP responses sent with TC", value=self.truncated
        )
        yield CounterMetricFamily(
            "ubiq_dns_tcp_rejected",
            "TCP connections refused: their source holds max_tcp_per_source already",
            value=self.tcp_rejected,
        )
        yield CounterMetricFamily(
            "ubiq_dns_tcp_shed",
            "TCP connections closed to make room for a newcomer (the quietest one)",
            value=self.tcp_shed,
        )
        yield GaugeMetricFamily(
            "ubiq_dns_tcp_connections", "Open TCP connections", value=self.tcp_connections
        )
        cumulative, buckets = 0, []
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), self._buckets, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "ubiq_dns_answer_seconds",
            "Time to compute an answer",
            buckets=buckets,
            sum_value=self._latency_sum,
        )
        if self._table is not None:
            table = self._table()
            yield GaugeMetricFamily(
                "ubiq_dns_table_generation",
                "Generation of the live answer table",
                value=table.generation,
            )
            yield GaugeMetricFamily(
                "ubiq_dns_table_entries", "Precomputed answers in the live table", value=table.size
            )


def _qtype(response: bytes) -> int:
    if response[4:6] != b"\x00\x01":
        return 0
    i, n = 12, len(response)
    while i < n and 0 < response[i] < 64:
        i += response[i] + 1
    return (response[i + 1] << 8) | response[i + 2] if i + 2 < n else 0
