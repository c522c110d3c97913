"""The watcher survives its directory being removed and recreated, and says when it is not watching.

``rm -rf DIR; cp -r saved DIR`` used to leave the watch on a dead inode: later edits were never
loaded and nothing said so. Now status, ``/readyz`` and the log report the lost watch, and the
watch is re-armed on the new directory.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx

from tests.support.policy import BASE, doc
from tests.support.poll import until
from tests.support.store import watching
from tests.support.ubiq_serve import serving, wait_until, write_policy


def route(timeout: str) -> str:
    return doc(
        "RoutePolicy",
        "web",
        f"hosts: [web.example]\nhttp:\n- route: [{{service: web}}]\n  timeout: {timeout}",
    )


async def test_store_rearms_after_the_directory_is_replaced(tmp_path: Path) -> None:
    root, saved = tmp_path / "policies", tmp_path / "saved"
    root.mkdir()
    (root / "base.yaml").write_text(BASE)
    (root / "route.yaml").write_text(route("1s"))
    shutil.copytree(root, saved)
    (saved / "route.yaml").write_text(route("2s"))
    async with watching(root, debounce_ms=20) as (store, swaps):
        shutil.rmtree(root)
        await until(lambda: not store.status.watching)
        assert "no such file or directory" in (store.status.watch_error or "")
        shutil.copytree(saved, root)
        model = await asyncio.wait_for(swaps.get(), 10)
        assert model.route_policies["web"].spec.http[0].timeout == 2000
        await until(lambda: store.status.watching)
        # the re-armed watch sees a later edit
        (root / "route.yaml").write_text(route("3s"))
        model = await asyncio.wait_for(swaps.get(), 10)
        assert model.route_policies["web"].spec.http[0].timeout == 3000
    assert not store.status.watching and store.status.watch_error == "watch stopped"


def test_serve_reports_a_lost_watch_and_rearms(tmp_path: Path) -> None:
    root, saved = tmp_path / "policies", tmp_path / "saved"
    write_policy(root)
    shutil.copytree(root, saved)
    with serving(root, tmp_path) as served:
        readyz = f"{served.api}/readyz"
        wait_until(lambda: httpx.get(readyz).status_code == 200, 10, "/readyz ready")
        shutil.rmtree(root)
        wait_until(lambda: httpx.get(readyz).status_code == 503, 10, "/readyz not ready")
        assert "no such file or directory" in httpx.get(readyz).text
        status = served.status()
        assert status["watching"] is False
        assert "no such file or directory" in str(status["watchError"])
        wait_until(lambda: "policy.watch.lost" in served.log_text(), 10, "the log line")

        shutil.copytree(saved, root)
        wait_until(lambda: httpx.get(readyz).status_code == 200, 10, "/readyz ready again")
        generation = served.status()["generation"]
        text = (root / "policy.yaml").read_text()
        (root / "policy.yaml").write_text(text.replace("ttl: 5s", "ttl: 7s"))
        wait_until(lambda: served.status()["generation"] != generation, 10, "the edit after re-arm")
        assert served.status()["watching"] is True


async def test_a_configmap_update_is_picked_up(tmp_path: Path) -> None:
    """The kubelet writes a new timestamped directory and swaps ``..data`` to it atomically."""
    root = tmp_path / "configmap"
    old, new = root / "..2024_06_01_a", root / "..2024_06_02_b"
    for stamped, timeout in ((old, "1s"), (new, "4s")):
        stamped.mkdir(parents=True)
        (stamped / "base.yaml").write_text(BASE)
        (stamped / "route.yaml").write_text(route(timeout))
    (root / "..data").symlink_to(old.name)
    for name in ("base.yaml", "route.yaml"):
        (root / name).symlink_to(f"..data/{name}")
    async with watching(root, debounce_ms=20) as (_, swaps):
        (root / "..data_tmp").symlink_to(new.name)
        (root / "..data_tmp").rename(root / "..data")
        model = await asyncio.wait_for(swaps.get(), 10)
        assert model.route_policies["web"].spec.http[0].timeout == 4000
