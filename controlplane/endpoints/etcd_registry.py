"""Registered endpoints in etcd, each key bound to a lease of the registration's TTL.

``PREFIX/endpoints/<service>/<id>`` holds the registration as JSON (with its lease id). A
heartbeat, sent to any replica, keeps that lease alive; when heartbeats stop, etcd expires the
lease and deletes the key, and every replica's watch sees it go. Nothing here counts time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import structlog

from controlplane.endpoints.model import (
    MAX_REGISTRATIONS,
    Registered,
    RegistrationError,
    UnknownEndpoint,
)
from controlplane.etcd.client import (
    EtcdClient,
    EtcdError,
    KeyValue,
    RangeResult,
    b64,
    delete_op,
    prefix_end,
)
from controlplane.etcd.follow import follow_range

log = structlog.get_logger("ubiq.endpoints")


def endpoints_prefix(prefix: str) -> str:
    return f"{prefix}/endpoints/"


class EtcdRegistry:
    def __init__(self, client: EtcdClient, prefix: str) -> None:
        self.client = client
        self.prefix = endpoints_prefix(prefix)
        self._view: tuple[Registered, ...] = ()
        self._callbacks: list[Callable[[], None]] = []
        self._follower: asyncio.Task[None] | None = None

    def key(self, service: str, endpoint_id: str) -> str:
        return f"{self.prefix}{service}/{endpoint_id}"

    async def _held(self, service: str, endpoint_id: str) -> tuple[KeyValue, int]:
        kv = await self.client.get(self.key(service, endpoint_id))
        if kv is None:
            raise UnknownEndpoint(f"{service}/{endpoint_id}: not registered (or expired)")
        return kv, kv.lease

    async def register(self, reg: Registered) -> Registered:
        key = self.key(reg.service, reg.id)
        old = await self.client.get(key)
        if old is None:
            count = await self.client.call(
                "/v3/kv/range",
                {"key": b64(self.prefix), "range_end": prefix_end(self.prefix), "count_only": True},
            )
            if int(count.get("count", 0)) >= MAX_REGISTRATIONS:
                raise RegistrationError(f"at most {MAX_REGISTRATIONS} registered endpoints")
        lease = await self.client.grant(reg.ttl_s)
        await self.client.put(key, json.dumps(reg.as_dict(), sort_keys=True), lease=lease)
        if old is not None and old.lease and old.lease != lease:
            with contextlib.suppress(EtcdError):  # the key moved to the new lease already
                await self.client.revoke(old.lease)
        return reg

    async def heartbeat(self, service: str, endpoint_id: str) -> int:
        _, lease = await self._held(service, endpoint_id)
        ttl = await self.client.keep_alive(lease) if lease else 0
        if ttl <= 0:
            raise UnknownEndpoint(f"{service}/{endpoint_id}: expired; register again")
        return ttl

    async def deregister(self, service: str, endpoint_id: str) -> None:
        _, lease = await self._held(service, endpoint_id)
        await self.client.txn([], [delete_op(self.key(service, endpoint_id))])
        if lease:
            with contextlib.suppress(EtcdError):
                await self.client.revoke(lease)

    def registered(self) -> tuple[Registered, ...]:
        return self._view

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    async def load(self) -> None:
        """The registrations as they are now (before the servers start)."""
        self._seen(await self.client.range(self.prefix, prefix=True), notify=False)

    async def start(self) -> None:
        self._follower = asyncio.create_task(
            follow_range(self.client, self.prefix, prefix=True, on_read=self._seen)
        )

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await self.client.aclose()

    def _seen(self, result: RangeResult, *, notify: bool = True) -> None:
        view: list[Registered] = []
        for kv in result.kvs:
            try:
                view.append(Registered.from_dict(json.loads(kv.value)))
            except (ValueError, KeyError, TypeError):
                log.warning("endpoint.unreadable", key=kv.key)
        new = tuple(sorted(view, key=lambda r: (r.service, r.id)))
        if new == self._view:
            return
        self._view = new
        if notify:
            for callback in self._callbacks:
                callback()
