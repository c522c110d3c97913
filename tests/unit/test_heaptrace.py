"""UBIQ_TRACEMALLOC_DIR: off without the variable; with it, snapshots whose diff names the line
that kept allocating."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controlplane.heaptrace import HeapTrace, growth, main

KEPT: list[bytes] = []


def allocate() -> None:
    KEPT.extend(bytes(1000) + bytes([i % 256]) for i in range(2000))  # the growing site


def test_off_unless_asked() -> None:
    assert HeapTrace.from_env({}) is None


def test_the_growing_site_leads_the_diff(tmp_path: Path) -> None:
    trace = HeapTrace.from_env(
        {"UBIQ_TRACEMALLOC_DIR": str(tmp_path), "UBIQ_TRACEMALLOC_FRAMES": "2"}
    )
    assert trace is not None and trace.frames == 2

    async def run() -> None:
        trace.start()
        try:
            await trace.dump()
            allocate()
        finally:
            await trace.stop()

    asyncio.run(run())
    KEPT.clear()
    first, last = sorted(tmp_path.glob("heap-*.pickle"))
    lines = growth(first, last, top=3)
    assert "test_heaptrace.py" in lines[2]  # the allocating line, most recent frame first
    assert lines[1].split()[0].startswith("+") and float(lines[1].split()[0]) > 1500  # KiB
    assert main([str(tmp_path)]) == 0
