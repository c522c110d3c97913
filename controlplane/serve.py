"""``ubiq serve``: the long-running process. Policy store first; xDS, DNS and API join it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path

import structlog

from controlplane.policy.store import DirectoryStore

log = structlog.get_logger("ubiq.serve")


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debounce-ms", type=int, default=100, help="wait this long after a change")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    directory: Path
    debounce_ms: int = 100

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeOptions:
        return cls(directory=args.directory, debounce_ms=args.debounce_ms)


async def serve(options: ServeOptions, *, ready: asyncio.Event | None = None) -> None:
    store = DirectoryStore(options.directory, debounce_ms=options.debounce_ms)
    store.load()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(store.watch())
    log.info("serving", directory=str(options.directory), hash=store.model.hash[:12])
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        store.stop()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
