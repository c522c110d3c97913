"""Opt-in heap tracing to find what grows in a long run (off unless ``UBIQ_TRACEMALLOC_DIR`` is set).

``UBIQ_TRACEMALLOC_DIR=DIR ubiq serve ...`` starts ``tracemalloc`` (``UBIQ_TRACEMALLOC_FRAMES``
frames per allocation, default 8) and writes a snapshot to ``DIR/heap-NNNN.pickle`` every
``UBIQ_TRACEMALLOC_INTERVAL`` seconds (default 60) and once more at exit. Then
``python -m controlplane.heaptrace DIR`` prints the allocation sites that grew most between the
first and the last snapshot (or two snapshots given as files). Tracing costs CPU and memory and
taking a snapshot pauses the event loop, so this is for soaks and debugging, never production.
"""

from __future__ import annotations

import asyncio
import ctypes
import sys
import time
import tracemalloc
from collections.abc import Mapping
from pathlib import Path

import structlog

log = structlog.get_logger("ubiq.heaptrace")

ENV_DIR = "UBIQ_TRACEMALLOC_DIR"
ENV_INTERVAL = "UBIQ_TRACEMALLOC_INTERVAL"
ENV_FRAMES = "UBIQ_TRACEMALLOC_FRAMES"
DEFAULT_INTERVAL = 60.0
DEFAULT_FRAMES = 8
_NOISE = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


class HeapTrace:
    """Snapshots of the traced heap in ``directory``, every ``interval`` seconds and at stop."""

    def __init__(self, directory: Path, interval: float, frames: int) -> None:
        self.directory = directory
        self.interval = interval
        self.frames = frames
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HeapTrace | None:
        directory = env.get(ENV_DIR)
        if not directory:
            return None
        interval = float(env.get(ENV_INTERVAL) or DEFAULT_INTERVAL)
        frames = int(env.get(ENV_FRAMES) or DEFAULT_FRAMES)
        return cls(Path(directory), interval, frames)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tracemalloc.start(self.frames)
        self._task = asyncio.get_running_loop().create_task(self._every())
        log.warning("heaptrace.started", directory=str(self.directory), interval=self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
        await self.dump()
        tracemalloc.stop()

    async def dump(self) -> Path:
        """Take a snapshot (quick, holds the loop) and write it in a thread (slow: filtering and
        pickling every trace), so DNS and xDS keep answering meanwhile."""
        path = self.directory / f"heap-{self.count:04d}.pickle"
        self.count += 1
        started = time.perf_counter()
        snapshot = tracemalloc.take_snapshot()
        taken = time.perf_counter() - started
        await asyncio.to_thread(_write, snapshot, path)
        traced, peak = tracemalloc.get_traced_memory()
        log.warning(
            "heaptrace.snapshot",
            path=str(path),
            blocked_seconds=round(taken, 2),
            seconds=round(time.perf_counter() - started, 2),
            traced_mib=round(traced / (1 << 20), 1),
            peak_mib=round(peak / (1 << 20), 1),
            **malloc_mib(),
        )
        return path

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.dump()


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def malloc_mib() -> dict[str, float]:
    """glibc's view of the C heap (every allocator user: Python, gRPC core, OpenSSL): in use and
    held free (``malloc_in_use_mib``, ``malloc_free_mib``, ``malloc_mmap_mib``); empty elsewhere.
    RSS growing while these stay flat points at fragmentation or at memory outside malloc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    mallinfo2.restype = _Mallinfo2
    info = mallinfo2()
    mib = 1 << 20
    return {
        "malloc_in_use_mib": round(info.uordblks / mib, 2),
        "malloc_free_mib": round(info.fordblks / mib, 2),
        "malloc_mmap_mib": round(info.hblkhd / mib, 2),
    }


def _write(snapshot: tracemalloc.Snapshot, path: Path) -> None:
    snapshot.filter_traces(_NOISE).dump(str(path))


def growth(first: Path, last: Path, top: int = 25) -> list[str]:
    """The ``top`` allocation sites (by traceback) that grew most from ``first`` to ``last``."""
    old = tracemalloc.Snapshot.load(str(first))
    new = tracemalloc.Snapshot.load(str(last))
    stats = new.compare_to(old, "traceback")
    lines = [
        f"total traced: {_mib(_total(old))} -> {_mib(_total(new))} MiB",
    ]
    for stat in stats[:top]:
        lines.append(
            f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+8d} blocks"
            f" (now {stat.size / 1024:.1f} KiB)"
        )
        lines.extend(
            f"    {line}" for line in stat.traceback.format(limit=8, most_recent_first=True)
        )
    return lines


def _total(snapshot: tracemalloc.Snapshot) -> int:
    return sum(trace.size for trace in snapshot.traces)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


def main(argv: list[str]) -> int:
    """``python -m controlplane.heaptrace DIR`` or ``... FIRST.pickle LAST.pickle``."""
    if len(argv) == 1:
        snapshots = sorted(Path(argv[0]).glob("heap-*.pickle"))
        if len(snapshots) < 2:
            print(f"{argv[0]}: fewer than two heap-*.pickle snapshots", file=sys.stderr)
            return 2
        first, last = snapshots[1 if len(snapshots) > 2 else 0], snapshots[-1]  # skip start-up
    elif len(argv) == 2:
        first, last = Path(argv[0]), Path(argv[1])
    else:
        print("usage: python -m controlplane.heaptrace DIR | FIRST LAST", file=sys.stderr)
        return 2
    print(f"{first.name} -> {last.name}")
    print("\n".join(growth(first, last)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
