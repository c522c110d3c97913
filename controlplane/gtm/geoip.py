"""Client network -> region: a CIDR table, or a MaxMind-format (.mmdb) database.

Two ways to use a database:

* ``MaxMindRegions.lookup(address)`` answers one address (with the database's prefix length,
  which is what an ECS scope should say);
* ``groups_from_regions(...)`` turns any region source into ``ClientGroup``s (one group per
  region, networks collapsed) so the DNS layer's longest-prefix table serves them with no
  per-query database access.

The record field that names the region is a path into the record, e.g. ``("region",)`` for a
database built for Ubiq, ``("continent", "code")`` or ``("country", "iso_code")`` for GeoIP2 /
GeoLite2 Country; ``mapping`` then turns that code into a region name (``{"EU": "eu-west"}``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from controlplane.errors import GtmError
from controlplane.gtm.types import ClientGroup, IPAddress, IPNetwork

__all__ = [
    "CidrRegions",
    "MaxMindRegions",
    "RegionMatch",
    "RegionSource",
    "groups_from_regions",
]


@dataclass(frozen=True, slots=True)
class RegionMatch:
    region: str
    network: IPNetwork  # the most specific network the answer holds for


class RegionSource(Protocol):
    def lookup(self, address: IPAddress | str) -> RegionMatch | None: ...

    def networks(self) -> Iterator[tuple[IPNetwork, str]]: ...


class CidrRegions:
    """A static table of networks per region; longest prefix wins."""

    def __init__(self, table: Mapping[str, Iterable[IPNetwork | str]]) -> None:
        entries: list[tuple[IPNetwork, str]] = []
        for region, nets in table.items():
            for net in nets:
                entries.append((ipaddress.ip_network(net, strict=False), region))
        # longest prefix first; lookup takes the first network that contains the address
        entries.sort(key=lambda e: e[0].prefixlen, reverse=True)
        self._entries = tuple(entries)

    def lookup(self, address: IPAddress | str) -> RegionMatch | None:
        ip = ipaddress.ip_address(address)
        for net, region in self._entries:
            if net.version == ip.version and ip in net:
                return RegionMatch(region, net)
        return None

    def networks(self) -> Iterator[tuple[IPNetwork, str]]:
        return iter(self._entries)


class MaxMindRegions:
    """Regions from a MaxMind DB file (read with the ``maxminddb`` package, memory-mapped)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        field: Sequence[str] = ("region",),
        mapping: Mapping[str, str] | None = None,
    ) -> None:
        import maxminddb  # optional dependency: imported only when a database is configured

        try:
            self._reader = maxminddb.open_database(os.fspath(path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GtmError(f"cannot open GeoIP database {os.fspath(path)!r}: {exc}") from exc
        self._field = tuple(field)
        self._mapping = dict(mapping or {})
        self.database_type: str = self._reader.metadata().database_type

    def lookup(self, address: IPAddress | str) -> RegionMatch | None:
        ip = ipaddress.ip_address(address)
        try:
            record, prefix = self._reader.get_with_prefix_len(ip)
        except ValueError:  # an IPv6 address in an IPv4-only database
            return None
        region = self._region(record)
        if region is None:
            return None
        return RegionMatch(region, ipaddress.ip_network(f"{ip}/{prefix}", strict=False))

    def networks(self) -> Iterator[tuple[IPNetwork, str]]:
        for net, record in self._reader:
            region = self._region(record)
            if region is not None:
                yield net, region

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> MaxMindRegions:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _region(self, record: Any) -> str | None:
        value: Any = record
        for key in self._field:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        if not isinstance(value, str):
            return None
        if self._mapping:
            return self._mapping.get(value)
        return value


def groups_from_regions(
    source: RegionSource, *, prefix: str = "", regions: Iterable[str] | None = None
) -> tuple[ClientGroup, ...]:
    """One ClientGroup per region (named ``prefix + region``, ``region`` set), networks collapsed.

    ``regions`` limits the result to the regions the policies know about.
    """
    wanted = set(regions) if regions is not None else None
    by_region: dict[str, list[IPNetwork]] = {}
    for net, region in source.networks():
        if wanted is None or region in wanted:
            by_region.setdefault(region, []).append(net)
    groups = []
    for region in sorted(by_region):
        nets = by_region[region]
        v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
        v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
        collapsed: list[IPNetwork] = [
            *ipaddress.collapse_addresses(v4),
            *ipaddress.collapse_addresses(v6),
        ]
        groups.append(ClientGroup(f"{prefix}{region}", tuple(collapsed), region=region))
    return tuple(groups)
