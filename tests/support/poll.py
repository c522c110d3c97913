"""The one way tests wait: poll a check, bounded in time, until it holds.

A check that raises counts as "not yet" (a server still starting, a connection reset); when
time runs out the TimeoutError names what was awaited and the last error seen.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


def wait_until(
    check: Callable[[], Any], timeout: float = 15.0, what: str = "condition", interval: float = 0.05
) -> None:
    """Block until ``check()`` is truthy, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            if check():
                return
        except Exception as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise TimeoutError(_timed_out(what, timeout, last_error))
        time.sleep(interval)


async def until(
    check: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.02,
) -> None:
    """On the running loop: wait until ``check()`` (plain or async) is truthy."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
        except Exception as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise TimeoutError(_timed_out(what, timeout, last_error))
        await asyncio.sleep(interval)


def _timed_out(what: str, timeout: float, error: Exception | None) -> str:
    last = f" (last error: {error!r})" if error is not None else ""
    return f"{what} not reached after {timeout}s{last}"
