"""DNS response-rate limiting (RRL) for UDP, as BIND, NSD and Knot do it (sans-I/O, clock injected).

Why: a UDP query's source address can be forged, so an authoritative server can be made to send
answers to a victim (reflection). RRL caps the responses any one client network gets per second.
Accounts are kept per client prefix (/24 IPv4, /56 IPv6) and per kind of response -- answers
(NOERROR, NODATA included), NXDOMAIN, errors (every other rcode) -- like BIND's
``responses-per-second``, ``nxdomains-per-second`` and ``errors-per-second``.

Each account is a token bucket: it earns ``rate`` credits a second up to ``rate`` (a one-second
burst) and every response costs one. An account in debt stays limited; its debt is capped at
``rate * window``, so once a flood stops it is answered again after at most ``window`` seconds
(BIND's ``window``: the rate is averaged over that long). A limited response is dropped, except
every ``slip``-th one, which is sent truncated (TC=1, question only): a real resolver behind a
forged-against prefix retries over TCP, which cannot be forged and is not rate limited; a forged
flood gets nothing bigger than the query. ``slip`` 0 drops all; 1 truncates all.

One table for every DNS worker process (``rrl_table.py``, as Knot DNS keeps one for its
threads): the kernel spreads one prefix's source ports over the workers, and each of them
charges the same account, so the prefix gets the rate in total. Updates take no lock: two
workers charging one account at the same instant can lose one of the two charges, so a prefix
may get a few responses more than the rate under a flood, never fewer, and never a corrupt slot.

Memory is bounded and fixed: ``table_size`` accounts (24 bytes each) allocated at start. A
prefix's account (one per kind) lives in one of the ``WAYS`` slots of a set chosen by a keyed
hash; a new account takes the slot whose account is least in debt (an empty one, or one whose
credit is full again, first: replacing that loses nothing). A flood from forged random sources
makes accounts that are barely used, so it replaces those, not a busy flooder's, which is deep
in debt by definition: the flooder loses its account only when every slot of its set holds a
flooder deeper in debt.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from hashlib import blake2b

from controlplane.errors import UbiqError
from controlplane.gtm.dns.rcodes import NOERROR, NXDOMAIN
from controlplane.gtm.dns.rrl_table import MAX_SLOTS, RrlTable


class Verdict(IntEnum):
    SEND = 0
    SLIP = 1  # send a truncated response instead
    DROP = 2


class Kind(IntEnum):
    """The accounts a prefix has: one per kind of response."""

    ANSWER = 0
    NXDOMAIN = 1
    ERROR = 2


# module constants: the hot path reads them without an attribute lookup on the enum
SEND, SLIP = Verdict.SEND, Verdict.SLIP
ANSWER, NXDOMAIN_KIND, ERROR = Kind.ANSWER, Kind.NXDOMAIN, Kind.ERROR

LOOPBACK = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True, slots=True)
class RrlConfig:
    """RRL settings; ``rate`` 0 turns RRL off. The defaults are those of ``ubiq serve``."""

    rate: int = 200  # answers per second per prefix (NSD's rrl-ratelimit)
    nxdomain_rate: int = 200
    error_rate: int = 200
    window: float = 15.0  # seconds (BIND's default)
    slip: int = 2  # BIND's and NSD's default
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    table_size: int = 65_536
    exempt: tuple[str, ...] = LOOPBACK  # sources that cannot be forged from outside

    def __post_init__(self) -> None:
        for name in ("rate", "nxdomain_rate", "error_rate", "slip", "table_size"):
            if getattr(self, name) < 0:
                raise UbiqError(f"dns rrl {name}: expected >= 0, got {getattr(self, name)}")
        if not self.window > 0:
            raise UbiqError(f"dns rrl window: expected seconds > 0, got {self.window}")
        if not 0 <= self.ipv4_prefix <= 32:
            raise UbiqError(f"dns rrl ipv4 prefix: expected 0..32, got {self.ipv4_prefix}")
        if not 0 <= self.ipv6_prefix <= 128:
            raise UbiqError(f"dns rrl ipv6 prefix: expected 0..128, got {self.ipv6_prefix}")
        if self.rate and not 1 <= self.table_size <= MAX_SLOTS:
            raise UbiqError(f"dns rrl table size: expected 1..{MAX_SLOTS}, got {self.table_size}")
        for network in self.exempt:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise UbiqError(f"dns rrl exempt: expected a network, got {network!r}") from None

    @property
    def enabled(self) -> bool:
        return self.rate > 0


#: slack on "at most one second ahead": the sums of 1/rate carry rounding errors
_EPSILON = 1e-6


class ResponseRateLimiter:
    """Decides, per UDP response, whether it is sent, slipped (truncated) or dropped.

    ``table``: where the accounts are; the DNS workers share one (``RrlTable.create_shared`` in
    the main process, ``attach`` in each worker), without workers the limiter makes a private
    one. The counters (``limited`` …) are this process's own; /metrics sums the workers'."""

    def __init__(
        self, config: RrlConfig, clock: Callable[[], float], table: RrlTable | None = None
    ) -> None:
        self.config = config
        self._clock = clock
        rates = (config.rate, config.nxdomain_rate, config.error_rate)
        self._intervals = tuple(1.0 / rate if rate > 0 else 0.0 for rate in rates)
        self._cap = 1.0 + config.window  # the most an account's tat runs ahead of now
        self._shift4 = 32 - config.ipv4_prefix
        self._shift6 = 128 - config.ipv6_prefix
        self._exempt = _networks(config.exempt)
        self.table = table if table is not None else RrlTable.private(config.table_size)
        self._key = self.table.key
        self._sets = self.table.sets
        self._ways = self.table.ways
        self._tags = self.table.tags
        self._tats = self.table.tats
        self._limited = self.table.limited
        # source address -> per kind (first slot of its set, tag), None when exempt (bounded)
        self._slots: dict[str, tuple[tuple[int, int], ...] | None] = {}
        self.limited = 0
        self.slipped = 0
        self.dropped = 0
        self.evicted = 0

    @property
    def accounts(self) -> int:
        return self.table.accounts()

    def filter(self, response: bytes, host: str) -> bytes | None:
        """The one hook a UDP path calls: ``response`` itself, its truncated form, or None."""
        if self._slots.get(host, _UNSEEN) is None:  # an exempt source (memoised): no account
            return response
        verdict = self.check(host, response[3] & 0x0F)
        if verdict is SEND:
            return response
        if verdict is SLIP:
            return truncate(response)
        return None

    def check(self, host: str, rcode: int) -> Verdict:
        """One response's verdict. The account is a token bucket kept as its theoretical
        arrival time (GCRA): ``tat - now`` is the bucket's emptiness in seconds (0: a full
        second of burst left; 1: empty; up to 1 + window: in debt). A response adds 1/rate and
        is sent while that stays within one second. An account at or behind ``now`` is the same
        as none, which is what a new prefix replaces first in its set."""
        try:  # first the source: an exempt one (loopback) is sent whatever the response
            slots = self._slots[host]
        except KeyError:
            slots = self._slots_of(host)
        if slots is None:
            return SEND
        kind = ANSWER if rcode == NOERROR else NXDOMAIN_KIND if rcode == NXDOMAIN else ERROR
        interval = self._intervals[kind]
        if not interval:
            return SEND
        first, tag = slots[kind]
        now = self._clock()
        tags, tats = self._tags, self._tats
        # read-modify-write without a lock: two workers updating one account at once can lose
        # one of the two updates (one response uncounted), never corrupt a slot (8-byte words)
        for slot in range(first, first + self._ways):
            if tags[slot] == tag:
                break
        else:
            slot = min(range(first, first + self._ways), key=tats.__getitem__)
            if tags[slot]:
                self.evicted += 1
            tags[slot] = tag
            self._limited[slot] = 0
            tats[slot] = now + interval
            return Verdict.SEND
        tat = tats[slot]
        if tat < now:
            tat = now
        tat += interval
        if tat > now + self._cap:
            tat = now + self._cap
        tats[slot] = tat
        if tat - now <= 1.0 + _EPSILON:
            return Verdict.SEND
        limited = self._limited[slot] + 1
        self._limited[slot] = limited
        self.limited += 1
        slip = self.config.slip
        if slip and limited % slip == 0:
            self.slipped += 1
            return Verdict.SLIP
        self.dropped += 1
        return Verdict.DROP

    def _slots_of(self, host: str) -> tuple[tuple[int, int], ...] | None:
        """Where the client's prefix keeps its accounts: per kind, the first slot of its set
        and its tag, from a keyed hash (BLAKE2b with the table's random key, so a client cannot
        aim its prefixes at one set). Memoised per source address (resolvers repeat theirs):
        parsing it was 5-7 % of a DNS worker's time under dnsperf."""
        prefix = self._prefix(host)
        slots = None
        if prefix is not None:
            digest = blake2b(prefix.to_bytes(17), key=self._key, digest_size=24).digest()
            words = [int.from_bytes(digest[i : i + 8]) for i in (0, 8, 16)]
            slots = tuple((w % self._sets * self._ways, w | 1) for w in words)
        if len(self._slots) >= _KEYS_LIMIT:
            self._slots.clear()
        self._slots[host] = slots
        return slots

    def _prefix(self, host: str) -> int | None:
        """The client's prefix as an int (IPv6 keys above every IPv4 key); None when exempt."""
        if ":" in host:
            try:
                packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
            except OSError:
                return None
            address = int.from_bytes(packed)
            family = 6
            prefix = (address >> self._shift6) | (1 << 130)
        else:
            try:
                packed = socket.inet_pton(socket.AF_INET, host)
            except OSError:
                return None
            address = int.from_bytes(packed)
            family = 4
            prefix = address >> self._shift4
        for net_family, network, mask in self._exempt:
            if net_family == family and address & mask == network:
                return None
        return prefix


_KEYS_LIMIT = 65536
_UNSEEN = ((0, 0),)  # not a source's slots: a source ``_slots`` has not seen yet


def _networks(texts: Sequence[str]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for text in texts:
        net = ipaddress.ip_network(text, strict=False)
        out.append((net.version, int(net.network_address), int(net.netmask)))
    return tuple(out)


def truncate(response: bytes) -> bytes:
    """``response`` cut to its header and question, with TC set and no other records."""
    end = 12
    if response[4:6] == b"\x00\x01":
        n = len(response)
        while end < n and 0 < response[end] < 64:
            end += response[end] + 1
        end = end + 5 if end < n and response[end] == 0 and end + 5 <= n else 12
    qdcount = b"\x00\x01" if end > 12 else b"\x00\x00"
    flags = bytes((response[2] | 0x02, response[3]))
    return response[:2] + flags + qdcount + b"\x00\x00\x00\x00\x00\x00" + response[12:end]
