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

Memory is bounded: at most ``table_size`` accounts, least recently used evicted first. A flood
from forged random sources can only evict an account that has been quiet while ``table_size``
other prefixes were seen, which a limited flooder (busy by definition) never is.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from controlplane.errors import UbiqError
from controlplane.gtm.dns.rcodes import NOERROR, NXDOMAIN


class Verdict(IntEnum):
    SEND = 0
    SLIP = 1  # send a truncated response instead
    DROP = 2


class Kind(IntEnum):
    """The accounts a prefix has: one per kind of response."""

    ANSWER = 0
    NXDOMAIN = 1
    ERROR = 2


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
        if self.rate and self.table_size < 1:
            raise UbiqError("dns rrl table size: expected >= 1")
        for network in self.exempt:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise UbiqError(f"dns rrl exempt: expected a network, got {network!r}") from None

    @property
    def enabled(self) -> bool:
        return self.rate > 0


class _Account:
    __slots__ = ("balance", "last", "limited")

    def __init__(self, balance: float, last: float) -> None:
        self.balance = balance
        self.last = last
        self.limited = 0


class ResponseRateLimiter:
    """Decides, per UDP response, whether it is sent, slipped (truncated) or dropped."""

    def __init__(self, config: RrlConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self._rates = (float(config.rate), float(config.nxdomain_rate), float(config.error_rate))
        self._shift4 = 32 - config.ipv4_prefix
        self._shift6 = 128 - config.ipv6_prefix
        self._exempt = _networks(config.exempt)
        self._keys: dict[str, int | None] = {}  # source address -> _key (bounded: _KEYS_LIMIT)
        self._accounts: OrderedDict[int, _Account] = OrderedDict()
        self.limited = 0
        self.slipped = 0
        self.dropped = 0
        self.evicted = 0

    @property
    def accounts(self) -> int:
        return len(self._accounts)

    def filter(self, response: bytes, host: str) -> bytes | None:
        """The one hook a UDP path calls: ``response`` itself, its truncated form, or None."""
        verdict = self.check(host, response[3] & 0x0F)
        if verdict is Verdict.SEND:
            return response
        if verdict is Verdict.SLIP:
            return truncate(response)
        return None

    def check(self, host: str, rcode: int) -> Verdict:
        kind = (
            Kind.ANSWER if rcode == NOERROR else Kind.NXDOMAIN if rcode == NXDOMAIN else Kind.ERROR
        )
        rate = self._rates[kind]
        if rate <= 0:
            return Verdict.SEND
        key = self._key(host)
        if key is None:
            return Verdict.SEND
        key = (key << 2) | kind
        now = self._clock()
        accounts = self._accounts
        account = accounts.get(key)
        if account is None:
            if len(accounts) >= self.config.table_size:
                accounts.popitem(last=False)
                self.evicted += 1
            accounts[key] = _Account(rate - 1.0, now)
            return Verdict.SEND
        accounts.move_to_end(key)
        balance = account.balance + max(0.0, now - account.last) * rate
        if balance > rate:
            balance = rate
        balance -= 1.0
        floor = -rate * self.config.window
        if balance < floor:
            balance = floor
        account.balance = balance
        account.last = now
        if balance >= 0.0:
            return Verdict.SEND
        account.limited += 1
        self.limited += 1
        slip = self.config.slip
        if slip and account.limited % slip == 0:
            self.slipped += 1
            return Verdict.SLIP
        self.dropped += 1
        return Verdict.DROP

    def _key(self, host: str) -> int | None:
        """The client's prefix as an int (IPv6 keys above every IPv4 key); None when exempt.
        Memoised per source address (resolvers repeat theirs): parsing it was 5-7 % of a DNS
        worker's time under dnsperf."""
        try:
            return self._keys[host]
        except KeyError:
            pass
        key = self._parse_key(host)
        if len(self._keys) >= _KEYS_LIMIT:
            self._keys.clear()
        self._keys[host] = key
        return key

    def _parse_key(self, host: str) -> int | None:
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
