"""Give the C heap's free memory back to the system now and then (glibc ``malloc_trim``).

Why: in the soak, the memory in use (glibc's ``uordblks``) stays flat while the free memory
glibc keeps (``fordblks``) grows: builds, pickling and gRPC run in several threads, each with its
own malloc arena, and the pages freed inside an arena stay in the process. ``malloc_trim(0)``
releases free pages of every arena (``MADV_DONTNEED``), so RSS follows the memory in use. It costs
a walk of the free lists (milliseconds for tens of MiB), once per ``TRIM_INTERVAL``. Does nothing
where glibc is not the allocator.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable

import structlog

log = structlog.get_logger("ubiq.malloctrim")

TRIM_INTERVAL = 60.0  # seconds


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


async def trim_forever(interval: float = TRIM_INTERVAL) -> None:
    """Call ``malloc_trim(0)`` every ``interval`` seconds until cancelled (returns at once
    without glibc)."""
    trim = _malloc_trim()
    if trim is None:
        log.info("malloctrim.unavailable", detail="not glibc; free memory stays with the process")
        return
    while True:
        await asyncio.sleep(interval)
        trim(0)
