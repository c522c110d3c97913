"""GeoIP databases named by the policies -> client groups (the I/O edge of ``geoDatabase``).

A database is read once per (path, size, mtime, wanted regions): the model changes far more often
than the file. A missing or unreadable database is reported in ``GeoLoad.errors`` and simply
contributes no groups, so the GTM keeps steering with the policies' CIDR groups.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from controlplane.errors import GtmError
from controlplane.gtm.from_model import geo_databases, geo_regions
from controlplane.gtm.geoip import MaxMindRegions, RegionSource, groups_from_regions
from controlplane.gtm.types import ClientGroup
from controlplane.policy.model import Model

__all__ = ["GeoDatabases", "GeoLoad"]

Opener = Callable[[str], RegionSource]
_Key = tuple[str, int, int, frozenset[str]]


@dataclass(frozen=True, slots=True)
class GeoLoad:
    groups: tuple[ClientGroup, ...]
    errors: tuple[str, ...] = ()  # one line per database that could not be used


def _open_maxmind(path: str) -> RegionSource:
    return MaxMindRegions(path)


class GeoDatabases:
    """Loads the databases a model names; remembers what it read."""

    def __init__(self, opener: Opener = _open_maxmind) -> None:
        self._open = opener
        self._cache: dict[str, tuple[_Key, tuple[ClientGroup, ...]]] = {}

    def load(self, model: Model) -> GeoLoad:
        paths = geo_databases(model)
        regions = geo_regions(model)
        groups: list[ClientGroup] = []
        errors: list[str] = []
        for path in paths:
            try:
                groups.extend(self._read(path, regions))
            except GtmError as exc:
                errors.append(str(exc))
        for stale in set(self._cache) - set(paths):
            del self._cache[stale]
        return GeoLoad(tuple(groups), tuple(errors))

    def _read(self, path: str, regions: frozenset[str]) -> tuple[ClientGroup, ...]:
        try:
            st = os.stat(path)
        except OSError as exc:
            self._cache.pop(path, None)
            raise GtmError(f"cannot read GeoIP database {path!r}: {exc.strerror or exc}") from exc
        key: _Key = (path, st.st_size, st.st_mtime_ns, regions)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        source = self._open(path)
        try:
            groups = groups_from_regions(source, regions=regions)
        except (OSError, ValueError, RuntimeError) as exc:  # maxminddb.InvalidDatabaseError too
            raise GtmError(f"GeoIP database {path!r} is corrupt: {exc}") from exc
        finally:
            close = getattr(source, "close", None)
            if callable(close):
                close()
        self._cache[path] = (key, groups)
        return groups


def describe(groups: Iterable[ClientGroup]) -> dict[str, int]:
    """Networks per group, for a log line."""
    return {g.name: len(g.networks) for g in groups}
