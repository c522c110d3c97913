"""The directory store against a real filesystem watcher: good changes swap, bad ones never do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.policy import BASE, doc
from tests.support.poll import until
from tests.support.store import watching

ROUTE = doc(
    "RoutePolicy", "web", "hosts: [web.example]\nhttp:\n- route: [{service: web}]\n  timeout: 1s"
)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "route.yaml").write_text(ROUTE)
    return tmp_path


async def test_valid_change_swaps_the_model(policy_dir: Path) -> None:
    async with watching(policy_dir) as (store, swaps):
        first = store.model.hash
        (policy_dir / "route.yaml").write_text(ROUTE.replace("timeout: 1s", "timeout: 3s"))
        model = await asyncio.wait_for(swaps.get(), 5)
        assert model.hash != first
        assert model.route_policies["web"].spec.http[0].timeout == 3000
        assert store.status.ok and store.status.generation == 2


async def test_invalid_change_keeps_the_last_good_model(policy_dir: Path) -> None:
    async with watching(policy_dir) as (store, swaps):
        good = store.model
        (policy_dir / "route.yaml").write_text(ROUTE.replace("service: web", "service: nope"))
        await until(lambda: store.status.rejected == 1, 5, "rejection counted")
        assert store.model is good
        assert not store.status.ok
        assert "unknown service 'nope'" in str(store.status.problems[0])
        assert swaps.empty()
        # fixing it recovers
        (policy_dir / "route.yaml").write_text(ROUTE.replace("timeout: 1s", "timeout: 2s"))
        model = await asyncio.wait_for(swaps.get(), 5)
        assert store.status.ok and model.route_policies["web"].spec.http[0].timeout == 2000


async def test_half_written_file_never_produces_a_broken_model(policy_dir: Path) -> None:
    async with watching(policy_dir) as (store, swaps):
        good = store.model
        path = policy_dir / "route.yaml"
        text = ROUTE.replace("timeout: 1s", "timeout: 5s")
        with path.open("w") as f:  # a slow writer: half the file, a pause, the rest
            f.write(text[: len(text) // 2])
            f.flush()
            await asyncio.sleep(0.4)
            f.write(text[len(text) // 2 :])
        model = await asyncio.wait_for(swaps.get(), 5)
        assert model.route_policies["web"].spec.http[0].timeout == 5000
        assert store.model is not good
        assert store.status.ok


async def test_editor_temp_files_do_not_trigger_reloads(policy_dir: Path) -> None:
    async with watching(policy_dir) as (store, swaps):
        (policy_dir / ".route.yaml.swp").write_text("garbage: [")
        (policy_dir / "route.yaml~").write_text("garbage: [")
        # a real change after them: the watcher sees events in order, so the first swap (and the
        # status when it arrives) shows whether the temp files were read before it
        (policy_dir / "route.yaml").write_text(ROUTE.replace("timeout: 1s", "timeout: 4s"))
        model = await asyncio.wait_for(swaps.get(), 5)
        assert model.route_policies["web"].spec.http[0].timeout == 4000
        assert swaps.empty() and store.status.ok and store.status.rejected == 0
        assert store.status.generation == 2


async def test_atomic_rename_is_picked_up(policy_dir: Path) -> None:
    async with watching(policy_dir) as (store, swaps):
        tmp = policy_dir / ".route.yaml.tmp"
        tmp.write_text(ROUTE.replace("timeout: 1s", "timeout: 7s"))
        tmp.rename(policy_dir / "route.yaml")
        model = await asyncio.wait_for(swaps.get(), 5)
        assert model.route_policies["web"].spec.http[0].timeout == 7000
        assert store.status.ok
