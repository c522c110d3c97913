"""A policy directory mounted from a Kubernetes ConfigMap: kubelet's atomic writer swaps a
``..data`` symlink to a new timestamped directory; the DirectoryStore must follow that swap."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from controlplane.policy.model import Model
from controlplane.policy.store import DirectoryStore
from tests.support.policy import BASE, doc

ROUTE = doc(
    "RoutePolicy", "web", "hosts: [web.example]\nhttp:\n- route: [{service: web}]\n  timeout: 1s"
)


def atomic_write(root: Path, files: dict[str, str], generation: int) -> None:
    """What kubelet does for a ConfigMap volume (pkg/volume/util/atomic_writer.go): write a new
    ``..<timestamp>`` directory, point ``..data_tmp`` at it, rename it over ``..data``, make the
    top-level names symlinks into ``..data`` (once), remove the old directory."""
    new = root / f"..2026_12_02_00_00_0{generation}.000000001"
    new.mkdir()
    for name, text in files.items():
        (new / name).write_text(text)
    old = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    os.symlink(new.name, root / "..data_tmp")
    os.rename(root / "..data_tmp", root / "..data")
    for name in files:
        if not (root / name).is_symlink():
            os.symlink(f"..data/{name}", root / name)
    if old is not None:
        for child in (root / old).iterdir():
            child.unlink()
        (root / old).rmdir()


async def test_configmap_swap_is_picked_up(tmp_path: Path) -> None:
    atomic_write(tmp_path, {"base.yaml": BASE, "route.yaml": ROUTE}, 1)
    store = DirectoryStore(tmp_path, debounce_ms=50)
    assert store.load().route_policies["web"].spec.http[0].timeout == 1000
    swaps: asyncio.Queue[Model] = asyncio.Queue()
    store.subscribe(swaps.put_nowait)
    task = asyncio.create_task(store.watch())
    await asyncio.sleep(0.3)  # let the watcher start
    try:
        atomic_write(tmp_path, {"base.yaml": BASE, "route.yaml": ROUTE.replace("1s", "4s")}, 2)
        async with asyncio.timeout(5):
            while store.model.route_policies["web"].spec.http[0].timeout != 4000:
                await swaps.get()
        assert store.status.ok
    finally:
        store.stop()
        await asyncio.wait_for(task, 5)
