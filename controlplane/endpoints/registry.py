"""Where registered endpoints live: the interface both registries offer.

``EtcdRegistry`` (``--store etcd://``) keeps each registration under
``PREFIX/endpoints/<service>/<id>`` bound to an etcd lease of its TTL: a heartbeat is a lease
keep-alive, and when heartbeats stop etcd expires the lease and deletes the key, on every
replica at once. ``MemoryRegistry`` (a policy directory: one process) keeps them in memory with
the same TTL semantics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from controlplane.endpoints.model import Registered


class EndpointRegistry(Protocol):
    async def register(self, reg: Registered) -> Registered: ...

    async def heartbeat(self, service: str, endpoint_id: str) -> int:
        """Renew the registration's TTL; its TTL in seconds (UnknownEndpoint when gone)."""
        ...

    async def deregister(self, service: str, endpoint_id: str) -> None: ...

    def registered(self) -> tuple[Registered, ...]:
        """Every live registration, as last seen."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> None:
        """``callback()`` after every change of ``registered()``."""
        ...

    async def load(self) -> None:
        """Read what is registered now (before the servers start)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
