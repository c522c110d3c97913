"""malloc_trim gives the free pages of a thread's arena back: RSS falls after memory allocated and
mostly freed in another thread (the pattern of table builds and pickling in worker threads)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from controlplane.malloctrim import _malloc_trim, trim_forever

KEPT: list[bytes] = []


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def fragment() -> None:
    """60 MB of 1 KB blocks (malloc, not pymalloc) in this thread's arena; every 20th kept, so
    the arena cannot shrink from its top alone."""
    made = [bytes(1024) + i.to_bytes(4) for i in range(60_000)]
    KEPT.extend(made[::20])


def test_trim_returns_free_pages_of_a_thread_arena() -> None:
    trim = _malloc_trim()
    assert trim is not None  # Debian/Ubuntu (the Makefile's platform): glibc
    worker = threading.Thread(target=fragment)
    worker.start()
    worker.join()
    before = rss_mib()
    trim(0)
    after = rss_mib()
    KEPT.clear()
    assert before - after > 20, (before, after)


def test_the_task_trims_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        trimmed = asyncio.Event()
        calls: list[int] = []

        def counting_trim(pad: int) -> int:
            calls.append(pad)
            if len(calls) >= 3:
                trimmed.set()
            return 0

        monkeypatch.setattr("controlplane.malloctrim._malloc_trim", lambda: counting_trim)
        task = asyncio.create_task(trim_forever(interval=0.001))
        await asyncio.wait_for(trimmed.wait(), 30)  # trimmed again and again, still running
        assert not task.done() and calls[:3] == [0, 0, 0]
        task.cancel()
        await asyncio.wait({task})
        assert task.cancelled()

    asyncio.run(run())
