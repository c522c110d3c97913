"""A stream's inbox: arrival order, requests bounded, wake-ups never wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from controlplane.xds.inbox import Inbox


async def until(blocked: Callable[[], bool]) -> None:
    """Let other tasks run until ``blocked()`` says the one under test is parked (bounded)."""
    for _ in range(1000):
        if blocked():
            return
        await asyncio.sleep(0)
    raise AssertionError("the task never parked")


def test_items_come_out_in_arrival_order_and_requests_are_bounded() -> None:
    async def run() -> None:
        inbox = Inbox(limit=2)
        await inbox.put_request("r1")
        inbox.put_nowait("wake")
        await inbox.put_request("r2")
        third = asyncio.create_task(inbox.put_request("r3"))
        await until(lambda: inbox._putter is not None)  # parked on the bound
        assert not third.done() and len(inbox) == 3  # two requests waiting: the third waits
        inbox.put_nowait("wake2")  # a wake-up is never held back by the bound
        assert await inbox.get() == "r1"
        inbox.request_done()
        await third  # taking a request frees room for the next
        assert [await inbox.get() for _ in range(4)] == ["wake", "r2", "wake2", "r3"]

    asyncio.run(run())


def test_a_waiting_get_is_woken_by_a_put_and_survives_cancellation() -> None:
    async def run() -> None:
        inbox = Inbox(limit=1)
        cancelled = asyncio.create_task(inbox.get())
        await until(lambda: inbox._getter is not None)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        getter = asyncio.create_task(inbox.get())
        await until(lambda: inbox._getter is not None)
        inbox.put_nowait("end")
        assert await getter == "end"

    asyncio.run(run())


def test_offer_takes_a_request_only_while_there_is_room() -> None:
    async def run() -> None:
        inbox = Inbox(limit=1)
        assert inbox.offer_request("r1")
        assert not inbox.offer_request("r2")  # full: the caller awaits put_request instead
        waiting = asyncio.create_task(inbox.put_request("r2"))
        await until(lambda: inbox._putter is not None)
        assert await inbox.get() == "r1"
        inbox.request_done()
        await waiting
        assert await inbox.get() == "r2"
        inbox.request_done()
        assert inbox.offer_request("r3")  # room again

    asyncio.run(run())
