"""GeoIP databases named by the policies -> client groups (the I/O edge of ``geoDatabase``).

A database is read once per (path, size, mtime, wanted regions): the model changes far more often
than the file. A missing or unreadable database is reported in ``GeoLoad.errors``; the groups
last read from that path keep serving (none if it was never read), so the GTM keeps steering.

The path is not trusted to be a file. ``maxminddb``'s C reader opens it while holding the GIL,
so a FIFO or a hung network mount there would freeze the whole process (DNS, xDS, API). Only a
regular file of at most ``MAX_GEO_BYTES`` is read, by a helper thread with a deadline
(``GEO_READ_TIMEOUT``) that opens it with ``O_NONBLOCK`` and re-checks it with ``fstat``; the
bytes go to a private temporary copy, and that copy is what the reader opens.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from controlplane.errors import GtmError
from controlplane.gtm.from_model import geo_databases, geo_regions
from controlplane.gtm.geoip import MaxMindRegions, RegionSource, groups_from_regions
from controlplane.gtm.types import ClientGroup
from controlplane.policy.filecheck import describe_mode
from controlplane.policy.model import Model

__all__ = ["GEO_READ_TIMEOUT", "MAX_GEO_BYTES", "GeoDatabases", "GeoLoad"]

MAX_GEO_BYTES = 512 * 1024 * 1024  # GeoLite2-City is about 70 MB
GEO_READ_TIMEOUT = 10.0  # seconds for a stat or a whole read of the database

Opener = Callable[[str], RegionSource]
_Key = tuple[str, int, int, frozenset[str]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GeoLoad:
    groups: tuple[ClientGroup, ...]
    errors: tuple[str, ...] = ()  # one line per database that could not be used


def _open_maxmind(path: str) -> RegionSource:
    return MaxMindRegions(path)


def bounded(work: Callable[[], T], what: str, timeout: float = GEO_READ_TIMEOUT) -> T:
    """``work()`` in a daemon thread; GtmError when it takes longer than ``timeout`` seconds (the
    thread is left to finish or hang on its own: a hung mount cannot be interrupted)."""
    result: list[T] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # handed to the caller
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="geoip-read", daemon=True).start()
    if not done.wait(timeout):
        raise GtmError(f"{what}: no answer within {timeout:g}s (hung mount?); not used")
    if failure:
        raise failure[0]
    return result[0]


def _check_regular(path: str, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = describe_mode(st.st_mode)
        raise GtmError(f"GeoIP database {path!r} is {kind}, not a regular file; not read")
    if st.st_size > MAX_GEO_BYTES:
        raise GtmError(
            f"GeoIP database {path!r} is {st.st_size} bytes; the limit is {MAX_GEO_BYTES}"
        )


def _copy_regular_file(path: str, into: str) -> None:
    """Copy ``path`` to ``into`` if it is a regular file under the size limit; never blocks on
    open (O_NONBLOCK) and re-checks the type on the open descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _check_regular(path, os.fstat(fd))
        copied = 0
        with open(into, "wb") as out:
            while chunk := os.read(fd, 1 << 20):
                copied += len(chunk)
                if copied > MAX_GEO_BYTES:
                    raise GtmError(f"GeoIP database {path!r} grew past {MAX_GEO_BYTES} bytes")
                out.write(chunk)
    finally:
        os.close(fd)


class GeoDatabases:
    """Loads the databases a model names; remembers what it read."""

    def __init__(self, opener: Opener = _open_maxmind, *, timeout: float = GEO_READ_TIMEOUT):
        self._open = opener
        self._timeout = timeout
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
                previous = self._cache.get(path)
                if previous is not None:  # the last good read keeps serving
                    groups.extend(previous[1])
                    errors.append(f"{exc}; keeping the database read before")
                else:
                    errors.append(str(exc))
        for stale in set(self._cache) - set(paths):
            del self._cache[stale]
        return GeoLoad(tuple(groups), tuple(errors))

    def _read(self, path: str, regions: frozenset[str]) -> tuple[ClientGroup, ...]:
        try:
            st = bounded(lambda: os.stat(path), f"GeoIP database {path!r}", self._timeout)
        except OSError as exc:
            raise GtmError(f"cannot read GeoIP database {path!r}: {exc.strerror or exc}") from exc
        _check_regular(path, st)
        key: _Key = (path, st.st_size, st.st_mtime_ns, regions)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        with tempfile.TemporaryDirectory(prefix="ubiq-geoip-") as private:
            copy = os.path.join(private, "db.mmdb")
            try:
                bounded(
                    lambda: _copy_regular_file(path, copy),
                    f"GeoIP database {path!r}",
                    self._timeout,
                )
            except OSError as exc:
                raise GtmError(
                    f"cannot read GeoIP database {path!r}: {exc.strerror or exc}"
                ) from exc
            try:
                source = self._open(copy)
            except GtmError as exc:
                raise GtmError(f"GeoIP database {path!r} cannot be opened: {exc}") from exc
            try:
                groups = groups_from_regions(source, regions=regions)
            except (OSError, ValueError, RuntimeError) as exc:  # maxminddb.InvalidDatabaseError
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
