"""One stream's inbox: requests read ahead (bounded) and snapshot wake-ups, in arrival order.

One consumer (the stream's loop) and one producer of requests (its reader task); wake-ups are
put without waiting. Leaner than an ``asyncio.Queue`` plus a ``Semaphore`` (four deques, ~3 KiB
per stream, measured with tracemalloc in bench/xds_fanout.py): a short list and at most one
waiting future per side, created only while someone waits.
"""

from __future__ import annotations

import asyncio


class Inbox:
    __slots__ = ("_getter", "_items", "_limit", "_putter", "_requests")

    def __init__(self, limit: int) -> None:
        self._items: list[object] = []  # at most ``limit`` requests + a few wake-ups
        self._limit = limit
        self._requests = 0  # requests put and not yet ``request_done``
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None

    def put_nowait(self, item: object) -> None:
        """Put a wake-up (or the end of the stream): never waits, never refused."""
        self._items.append(item)
        _wake(self._getter)

    def offer_request(self, request: object) -> bool:
        """Put a request if there is room (no coroutine, no wait: the usual case); False if
        the caller must ``await put_request``."""
        if self._requests >= self._limit:
            return False
        self._requests += 1
        self.put_nowait(request)
        return True

    async def put_request(self, request: object) -> None:
        """Put a request once fewer than ``limit`` are waiting (``request_done`` frees one)."""
        while self._requests >= self._limit:
            self._putter = asyncio.get_running_loop().create_future()
            try:
                await self._putter
            finally:
                self._putter = None
        self._requests += 1
        self.put_nowait(request)

    def request_done(self) -> None:
        """The consumer took a request: one more may be read ahead."""
        self._requests -= 1
        _wake(self._putter)

    async def get(self) -> object:
        while not self._items:
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        return self._items.pop(0)

    def __len__(self) -> int:
        return len(self._items)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
