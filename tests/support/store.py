"""A DirectoryStore watching a real directory, for the store and watcher tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from controlplane.policy.model import Model
from controlplane.policy.store import DirectoryStore
from tests.support.poll import until


@contextlib.asynccontextmanager
async def watching(
    root: Path, *, debounce_ms: int = 50
) -> AsyncIterator[tuple[DirectoryStore, asyncio.Queue[Model]]]:
    """A loaded store watching ``root`` (ready: a change made now is seen), its swaps in a
    queue; stopped, bounded, when the block ends."""
    store = DirectoryStore(root, debounce_ms=debounce_ms)
    store.load()
    swaps: asyncio.Queue[Model] = asyncio.Queue()
    store.subscribe(swaps.put_nowait)
    task = asyncio.create_task(store.watch())
    try:
        await asyncio.wait_for(store.watch_ready.wait(), 5)
        await until(lambda: store.status.watching, 5, "the store watching")
        yield store, swaps
    finally:
        store.stop()
        await asyncio.wait_for(task, 10)
