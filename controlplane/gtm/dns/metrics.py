"""The DNS server's own metrics, on an explicit prometheus-client registry.

The hot path only bumps plain dict counters and a bucket list (no locks, no label lookups); a
collector turns them into metric families at scrape time and reads the table gauges from the
live table, so a scrape always sees one table generation. Names and labels follow CoreDNS
(``coredns_dns_requests_total{proto,type}``, ``..._responses_total{rcode}``,
``..._request_duration_seconds{type}``). The first A/AAAA address of each answer is counted
and turned into its region at scrape time (``watch_regions``).
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple, Protocol, TypeVar

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


#: (transport, qtype or OTHER_QTYPE, rcode, first A/AAAA rdata of a NOERROR answer or None)
ResponseKey = tuple[str, int, int, bytes | None]
#: what a sent response adds to the counts: its ``ResponseKey`` and whether it has TC set
Tally = tuple[ResponseKey, bool]


def tally(transport: str, response: bytes) -> Tally:
    """What ``response`` (as sent over ``transport``) adds to the counts; it depends on the
    bytes after the ID only, so it holds for every response the packet cache makes of it."""
    qtype, end = _question(response)
    rcode = response[3] & 0x0F
    address = None
    if rcode == 0 and end and (response[7] or response[6]):
        i = end + 5
        if (
            len(response) >= i + 16
            and response[i] == 0xC0
            and response[i + 2 : i + 4] == b"\x00\x01"
        ):  # the usual answer: A at a compressed name
            address = response[i + 12 : i + 16]
        else:
            address = _first_address(response, i)
    key = (transport, qtype if qtype in QTYPES else OTHER_QTYPE, rcode, address)
    return key, bool(response[2] & 0x02)


class RrlInfo(Protocol):
    """What the RRL metrics read from the rate limiter."""

    limited: int
    slipped: int
    dropped: int
    evicted: int

    @property
    def accounts(self) -> int: ...


class PacketCacheInfo(Protocol):
    """What the packet cache metrics read (``packet_cache.PacketCache``)."""

    hits: int
    misses: int


class TableInfo(Protocol):
    """What the gauges read from the live table."""

    @property
    def generation(self) -> int: ...
    @property
    def size(self) -> int: ...


class RrlCounts(NamedTuple):
    """A rate limiter's counters (``RrlInfo``) as plain numbers, to ship between processes."""

    limited: int = 0
    slipped: int = 0
    dropped: int = 0
    evicted: int = 0
    accounts: int = 0

    @classmethod
    def of(cls, rrl: RrlInfo) -> RrlCounts:
        return cls(rrl.limited, rrl.slipped, rrl.dropped, rrl.evicted, rrl.accounts)


class CountsDelta(NamedTuple):
    """Query counts of one interval, as ``DnsMetrics`` keeps them (picklable). ``rrl``: the
    counters of the worker's rate limiter since the last delta, and ``accounts`` as it stands
    now (None without RRL)."""

    responses: dict[ResponseKey, int]
    dropped: dict[str, int]
    truncated: int
    buckets: dict[int, list[float]]
    rrl: RrlCounts | None = None
    cache: tuple[int, int] = (0, 0)  # packet cache (hits, misses) of the interval


class RrlTotals:
    """The RRL counters of every DNS worker, summed (an ``RrlInfo`` for the main process's
    /metrics). Accounts are a gauge of the one table the workers share: the newest figure any
    worker sent."""

    def __init__(self) -> None:
        self.limited = self.slipped = self.dropped = self.evicted = 0
        self.accounts = 0

    def add(self, delta: RrlCounts) -> None:
        self.limited += delta.limited
        self.slipped += delta.slipped
        self.dropped += delta.dropped
        self.evicted += delta.evicted
        self.accounts = delta.accounts


class DnsMetrics(Collector):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # (transport, qtype or OTHER_QTYPE, rcode, first A/AAAA rdata of a NOERROR answer or
        # None) -> n. rcode is 4 bits; addresses come from the table, so the keys are bounded.
        self.responses: dict[ResponseKey, int] = {}
        self.dropped: dict[str, int] = {}
        self.truncated = 0
        self.tcp_connections = 0
        self.tcp_rejected = 0
        self.tcp_shed = 0
        # qtype -> bucket counts (the last one +Inf), then the sum of seconds
        self._buckets: dict[int, list[float]] = {}
        self._table: Callable[[], TableInfo] | None = None
        self._rrl: RrlInfo | None = None  # this process's rate limiter
        self._rrl_sent = RrlCounts()  # what ``take`` has shipped of it
        self._worker_rrl: RrlTotals | None = None  # the workers' rate limiters (``merge``)
        self._cache: PacketCacheInfo | None = None  # this process's packet cache
        self._cache_sent = (0, 0)  # (hits, misses) ``take`` has shipped of it
        self._worker_cache = (0, 0)  # the workers' packet caches, summed (``merge``)
        self._region_of: Callable[[str], str] = _no_region
        if registry is not None:
            registry.register(self)

    def watch_table(self, table: Callable[[], TableInfo]) -> None:
        self._table = table

    def watch_rrl(self, rrl: RrlInfo) -> None:
        self._rrl = rrl

    def watch_packet_cache(self, cache: PacketCacheInfo) -> None:
        self._cache = cache

    def watch_regions(self, region_of: Callable[[str], str]) -> None:
        """``region_of(address)``: the region of the target with that address ("" if none)."""
        self._region_of = region_of

    def take(self) -> CountsDelta:
        """The query counts since the last ``take`` (a DNS worker ships them to the main
        process); counting starts again from zero."""
        rrl = None
        if self._rrl is not None:
            now, sent = RrlCounts.of(self._rrl), self._rrl_sent
            rrl = RrlCounts(
                now.limited - sent.limited,
                now.slipped - sent.slipped,
                now.dropped - sent.dropped,
                now.evicted - sent.evicted,
                now.accounts,
            )
            self._rrl_sent = now
        cache = (0, 0)
        if self._cache is not None:
            now_hits, now_misses = self._cache.hits, self._cache.misses
            cache = (now_hits - self._cache_sent[0], now_misses - self._cache_sent[1])
            self._cache_sent = (now_hits, now_misses)
        delta = CountsDelta(self.responses, self.dropped, self.truncated, self._buckets, rrl, cache)
        self.responses, self.dropped, self.truncated, self._buckets = {}, {}, 0, {}
        return delta

    def merge(self, delta: CountsDelta, worker: int = 0) -> None:
        """Add worker ``worker``'s counts to these (the main process's, which /metrics shows)."""
        if delta.rrl is not None:
            if self._worker_rrl is None:
                self._worker_rrl = RrlTotals()
            self._worker_rrl.add(delta.rrl)
        hits, misses = self._worker_cache
        self._worker_cache = (hits + delta.cache[0], misses + delta.cache[1])
        for key, n in delta.responses.items():
            self.responses[key] = self.responses.get(key, 0) + n
        for transport, n in delta.dropped.items():
            self.dropped[transport] = self.dropped.get(transport, 0) + n
        self.truncated += delta.truncated
        for qtype, counts in delta.buckets.items():
            mine = self._buckets.get(qtype)
            if mine is None:
                self._buckets[qtype] = list(counts)
            else:
                for i, value in enumerate(counts):
                    mine[i] += value

    def observe(self, transport: str, response: bytes | None, seconds: float) -> None:
        """Count one query: ``response`` as sent (None: dropped, nothing sent)."""
        if response is None:
            self.dropped[transport] = self.dropped.get(transport, 0) + 1
            return
        self.count(tally(transport, response), seconds)

    def count(self, counted: Tally, seconds: float) -> None:
        """Count one query whose sent response has the tally ``counted`` (``tally``): what
        ``observe`` does once the response is parsed, so a response kept with its tally (the
        packet cache) is counted without parsing it again."""
        # runs once per query: one dict operation per family
        key, truncated = counted
        responses = self.responses
        responses[key] = responses.get(key, 0) + 1
        if truncated:
            self.truncated += 1
        buckets = self._buckets.get(key[1])
        if buckets is None:
            buckets = self._buckets[key[1]] = [0] * (len(LATENCY_BUCKETS) + 2)
        buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        buckets[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        received: dict[tuple[str, str], int] = {}
        sent: dict[tuple[str, str, str], int] = {}
        by_address: dict[tuple[str, str], int] = {}
        for (transport, qtype, rcode, address), n in self.responses.items():
            qname = QTYPES.get(qtype, "OTHER")
            _add(received, (transport, qname), n)
            _add(sent, (transport, qname, RCODE_LABELS.get(rcode, str(rcode))), n)
            if address is not None:
                text = str(ipaddress.ip_address(address))
                _add(by_address, (self._region_of(text), text), n)
        for transport, n in self.dropped.items():
            _add(received, (transport, "NONE"), n)
        yield _labelled(
            "ubiq_dns_requests",
            "DNS queries received, by transport and query type (NONE: no readable question)",
            ["proto", "type"],
            received,
        )
        yield _labelled(
            "ubiq_dns_responses",
            "DNS responses sent, by transport, query type and rcode",
            ["proto", "type", "rcode"],
            sent,
        )
        yield _labelled(
            "ubiq_dns_answers",
            "NOERROR answers carrying an address, by the first address and its region"
            ' ("" for an address that is no current target, e.g. a fallback)',
            ["region", "address"],
            by_address,
        )
        yield _labelled(
            "ubiq_dns_dropped",
            "Queries dropped without a response",
            ["proto"],
            {(t,): n for t, n in self.dropped.items()},
        )
        yield from _scalars(
            (COUNTER, "ubiq_dns_truncated", "UDP responses sent with TC", self.truncated),
            (
                COUNTER,
                "ubiq_dns_tcp_rejected",
                "TCP connections refused: their source holds max_tcp_per_source already",
                self.tcp_rejected,
            ),
            (
                COUNTER,
                "ubiq_dns_tcp_shed",
                "TCP connections closed to make room for a newcomer (the quietest one)",
                self.tcp_shed,
            ),
            (GAUGE, "ubiq_dns_tcp_connections", "Open TCP connections", self.tcp_connections),
        )
        durations = HistogramMetricFamily(
            "ubiq_dns_request_duration_seconds",
            "Time to compute the response to a query, by query type",
            labels=["type"],
        )
        for qtype, counts in sorted(self._buckets.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts[:-1], strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            durations.add_metric([QTYPES.get(qtype, "OTHER")], buckets, sum_value=counts[-1])
        yield durations
        rrl = self._rrl if self._rrl is not None else self._worker_rrl
        if rrl is not None:
            yield from _rrl_metrics(rrl)
        hits, misses = self._worker_cache
        if self._cache is not None:
            hits, misses = hits + self._cache.hits, misses + self._cache.misses
        yield from _scalars(
            (
                COUNTER,
                "ubiq_dns_packet_cache_hits",
                "UDP queries answered from the packet cache (the same query bytes from the same "
                "source, answered by the same table)",
                hits,
            ),
            (
                COUNTER,
                "ubiq_dns_packet_cache_misses",
                "UDP queries answered from the table",
                misses,
            ),
        )
        if self._table is not None:
            yield GaugeMetricFamily(
                "ubiq_dns_table_entries",
                "Precomputed answers in the live table",
                value=self._table().size,
            )


COUNTER, GAUGE = CounterMetricFamily, GaugeMetricFamily
K = TypeVar("K")
L = TypeVar("L", bound=tuple[str, ...])  # label values


def _add(counts: dict[K, int], key: K, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


def _labelled(
    name: str, text: str, labels: list[str], counts: Mapping[L, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, text, labels=labels)
    for values, n in sorted(counts.items()):
        family.add_metric(list(values), n)
    return family


def _scalars(
    *rows: tuple[type[CounterMetricFamily] | type[GaugeMetricFamily], str, str, float],
) -> Iterator[Metric]:
    """One unlabelled family per (kind, name, help, value)."""
    for kind, name, text, value in rows:
        yield kind(name, text, value=value)


def _rrl_metrics(rrl: RrlInfo) -> Iterator[Metric]:
    return _scalars(
        (
            COUNTER,
            "ubiq_dns_rrl_limited",
            "UDP responses over their prefix's rate (response-rate limiting): slipped + dropped",
            rrl.limited,
        ),
        (
            COUNTER,
            "ubiq_dns_rrl_slipped",
            "Rate-limited UDP responses sent truncated (TC=1) so a real client retries over TCP",
            rrl.slipped,
        ),
        (COUNTER, "ubiq_dns_rrl_dropped", "Rate-limited UDP responses not sent", rrl.dropped),
        (
            COUNTER,
            "ubiq_dns_rrl_evicted",
            "RRL accounts replaced by a new prefix's (the least indebted of its set)",
            rrl.evicted,
        ),
        (
            GAUGE,
            "ubiq_dns_rrl_accounts",
            "RRL accounts held (prefix x kind of response) in the table the DNS workers share",
            rrl.accounts,
        ),
    )


def _no_region(address: str) -> str:
    return ""


def _question(response: bytes) -> tuple[int, int]:
    """(qtype, offset of the question name's root label); (0, 0) without a question."""
    if response[4:6] != b"\x00\x01":
        return 0, 0
    i, n = 12, len(response)
    while i < n and 0 < response[i] < 64:
        i += response[i] + 1
    if i + 2 < n and response[i] == 0:
        return (response[i + 1] << 8) | response[i + 2], i
    return 0, 0


def _first_address(response: bytes, i: int) -> bytes | None:
    """The rdata of the first A or AAAA record of the answer section starting at ``i``."""
    n = len(response)
    for _ in range(min((response[6] << 8) | response[7], 8)):
        if i >= n:
            return None
        if response[i] & 0xC0 == 0xC0:  # compressed owner name: a pointer
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
