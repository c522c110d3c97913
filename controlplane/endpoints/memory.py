"""Registered endpoints in memory, for ``ubiq serve DIR`` (one process): same TTL semantics as
etcd leases. A registration not renewed within its TTL is dropped by a timer set for the earliest
expiry."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from controlplane.endpoints.model import (
    MAX_REGISTRATIONS,
    Registered,
    RegistrationError,
    UnknownEndpoint,
)

log = structlog.get_logger("ubiq.endpoints")


class MemoryRegistry:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[tuple[str, str], tuple[Registered, float]] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._view: tuple[Registered, ...] = ()

    async def register(self, reg: Registered) -> Registered:
        key = (reg.service, reg.id)
        if key not in self._held and len(self._held) >= MAX_REGISTRATIONS:
            raise RegistrationError(f"at most {MAX_REGISTRATIONS} registered endpoints")
        self._held[key] = (reg, self._clock() + reg.ttl_s)
        self._changed()
        return reg

    async def heartbeat(self, service: str, endpoint_id: str) -> int:
        held = self._held.get((service, endpoint_id))
        if held is None or held[1] <= self._clock():
            raise UnknownEndpoint(f"{service}/{endpoint_id}: not registered (or expired)")
        reg = held[0]
        self._held[(service, endpoint_id)] = (reg, self._clock() + reg.ttl_s)
        self._wake.set()
        return reg.ttl_s

    async def deregister(self, service: str, endpoint_id: str) -> None:
        if self._held.pop((service, endpoint_id), None) is None:
            raise UnknownEndpoint(f"{service}/{endpoint_id}: not registered (or expired)")
        self._changed()

    def registered(self) -> tuple[Registered, ...]:
        return self._view

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    async def load(self) -> None:
        """Nothing to read: a process starts with no registrations."""

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    def _changed(self) -> None:
        self._view = tuple(reg for reg, _ in sorted(self._held.values(), key=_order))
        self._wake.set()
        for callback in self._callbacks:
            callback()

    async def _sweep(self) -> None:
        while True:
            now = self._clock()
            expired = [k for k, (_, until) in self._held.items() if until <= now]
            for key in expired:
                del self._held[key]
                log.info("endpoint.expired", service=key[0], id=key[1])
            if expired:
                self._changed()
            self._wake.clear()
            earliest = min((until for _, until in self._held.values()), default=None)
            wait = None if earliest is None else max(0.0, earliest - self._clock()) + 0.01
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()


def _order(held: tuple[Registered, float]) -> tuple[str, str]:
    return (held[0].service, held[0].id)
