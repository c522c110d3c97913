"""Follow a key or a prefix in etcd: read it, and read it again after every change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from controlplane.etcd.client import EtcdClient, EtcdError, RangeResult

log = structlog.get_logger("ubiq.etcd")

RETRY_S = (0.1, 0.2, 0.5, 1.0)  # backoff while no member answers


async def follow_range(
    client: EtcdClient, key: str, *, prefix: bool, on_read: Callable[[RangeResult], None]
) -> None:
    """Read ``key`` (or every key under it), hand it on, and again after every change, forever;
    while etcd does not answer, retry with a short backoff."""
    failures = 0
    while True:
        try:
            result = await client.range(key, prefix=prefix)
            on_read(result)
            async for _ in client.watch(key, prefix=prefix, start_revision=result.revision + 1):
                failures = 0
                result = await client.range(key, prefix=prefix)
                on_read(result)
        except EtcdError as exc:
            delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
            failures += 1
            log.warning("replica.etcd.unavailable", key=key, error=str(exc)[:200], retry_in_s=delay)
            await asyncio.sleep(delay)
