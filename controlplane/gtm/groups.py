"""Client address -> client group, by longest-prefix match over the groups' networks.

Networks are kept per family as one dict per prefix length, keyed by the masked address as an
int; a lookup tries the lengths present, longest first (a handful of dict probes). Lookups by
source-address string are memoised in a bounded dict because resolvers repeat themselves.
Tables are filled once (``add`` per network, then ``finish`` sorts); a ClientGroups is built once
per model (``plan_from_model``) and shared by every table and explanation of that model.
``longest_within`` gives the ECS scope an answer needs (RFC 7871 7.2.1): the longest group
prefix inside the client's source network, found by bisecting sorted network lists per length.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections.abc import Iterable

from controlplane.errors import GtmError
from controlplane.gtm.types import DEFAULT_GROUP, ClientGroup

_MEMO_LIMIT = 65536


class _PrefixTable:
    __slots__ = ("_bits", "_by_len", "_lengths", "_sorted")

    def __init__(self, bits: int) -> None:
        self._bits = bits
        self._by_len: dict[int, dict[int, str]] = {}
        self._lengths: tuple[int, ...] = ()
        self._sorted: dict[int, list[int]] = {}  # length -> network addresses, ascending

    def add(self, network: int, length: int, group: str) -> None:
        table = self._by_len.setdefault(length, {})
        other = table.get(network)
        if other is not None and other != group:
            raise GtmError(
                f"client network {network:#x}/{length} is in groups {other!r} and {group!r}"
            )
        if network not in table:
            self._sorted.setdefault(length, []).append(network)
        table[network] = group

    def finish(self) -> None:
        """Sort once, after the last ``add``."""
        self._lengths = tuple(sorted(self._by_len, reverse=True))
        for networks in self._sorted.values():
            networks.sort()

    def lookup(self, address: int, max_length: int) -> str | None:
        bits = self._bits
        for length in self._lengths:
            if length > max_length:
                continue
            masked = (address >> (bits - length)) << (bits - length) if length else 0
            group = self._by_len[length].get(masked)
            if group is not None:
                return group
        return None

    def longest_within(self, address: int, source: int) -> int:
        """The longest group prefix inside ``address/source``, or ``source`` if none is longer."""
        bits = self._bits
        low = (address >> (bits - source)) << (bits - source) if source else 0
        high = low + (1 << (bits - source))
        for length in self._lengths:
            if length <= source:
                break
            networks = self._sorted[length]
            i = bisect.bisect_left(networks, low)
            if i < len(networks) and networks[i] < high:
                return length
        return source


class ClientGroups:
    """Longest-prefix match of client addresses (source or EDNS Client Subnet) to group names."""

    __slots__ = ("_by_name", "_memo", "_v4", "_v6", "default", "groups")

    def __init__(self, groups: Iterable[ClientGroup] = (), default: str = DEFAULT_GROUP) -> None:
        self.groups: tuple[ClientGroup, ...] = tuple(groups)
        self.default = default
        self._v4 = _PrefixTable(32)
        self._v6 = _PrefixTable(128)
        self._memo: dict[str, str] = {}
        for group in self.groups:
            for net in group.networks:
                table = self._v4 if net.version == 4 else self._v6
                table.add(int(net.network_address), net.prefixlen, group.name)
        self._v4.finish()
        self._v6.finish()
        self._by_name: dict[str, ClientGroup] = {}
        for group in self.groups:
            self._by_name.setdefault(group.name, group)

    def __getstate__(self) -> dict[str, object]:
        """Pickled (to DNS workers) without the lookup memo: it is rebuilt on use."""
        return {slot: getattr(self, slot) for slot in self.__slots__ if slot != "_memo"}

    def __setstate__(self, state: dict[str, object]) -> None:
        for slot, value in state.items():
            object.__setattr__(self, slot, value)
        self._memo = {}

    @property
    def names(self) -> tuple[str, ...]:
        """Every group name that can be answered, the default group last; no duplicates."""
        seen = dict.fromkeys(g.name for g in self.groups)
        seen.pop(self.default, None)
        return (*seen, self.default)

    def lookup_v4(self, address: int, prefix: int = 32) -> str:
        return self._v4.lookup(address, prefix) or self.default

    def lookup_v6(self, address: int, prefix: int = 128) -> str:
        return self._v6.lookup(address, prefix) or self.default

    def scope_v4(self, address: int, source: int) -> int:
        """ECS scope for an answer that depends on the group of ``address/source``."""
        return self._v4.longest_within(address, source)

    def scope_v6(self, address: int, source: int) -> int:
        return self._v6.longest_within(address, source)

    def group_for(self, host: str) -> ClientGroup:
        """The group of a source address given as text, the default group (no networks) if none."""
        name = self.lookup(host)
        return self._by_name.get(name) or ClientGroup(name, ())

    def lookup(self, host: str) -> str:
        """Group of a source address given as text (as asyncio reports it)."""
        group = self._memo.get(host)
        if group is not None:
            return group
        group = self._lookup_text(host)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[host] = group
        return group

    def _lookup_text(self, host: str) -> str:
        try:
            if ":" not in host:
                return self.lookup_v4(int.from_bytes(socket.inet_pton(socket.AF_INET, host)))
            addr = ipaddress.IPv6Address(host.split("%", 1)[0])
        except (OSError, ValueError):
            return self.default
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return self.lookup_v4(int(mapped))
        return self.lookup_v6(int(addr))
