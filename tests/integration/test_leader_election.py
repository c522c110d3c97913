"""Leader election on a real etcd: one leader at a time, fenced writes, and leadership moving
to another replica process when the leader's process is killed."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.etcd.client import EtcdClient
from controlplane.etcd.process import EtcdCluster
from controlplane.replica.leader import (
    LeaderElection,
    NotLeader,
    publish_decision,
    read_decisions,
)
from tests.support.etcd import etcd_cluster
from tests.support.procs import running

REPO = Path(__file__).resolve().parents[2]
TTL_S = 2


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with etcd_cluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


async def test_one_leader_fenced_writes_and_handover(etcd: EtcdCluster) -> None:
    client = EtcdClient(etcd.endpoints)
    a = LeaderElection(client, "/le1", "a", ttl_s=TTL_S)
    b = LeaderElection(client, "/le1", "b", ttl_s=TTL_S)
    first = await a.campaign()
    assert await a.leader() == "a"
    waiting = asyncio.create_task(b.campaign())
    await publish_decision(client, "/le1", first, "weights", {"eu": 70})
    assert not waiting.done()  # b keeps waiting while a leads and keeps its lease alive
    await a.resign()
    second = await asyncio.wait_for(waiting, TTL_S * 3)
    assert second.fence != first.fence and await b.leader() == "b"
    with pytest.raises(NotLeader):  # the old leader's fence no longer holds
        await publish_decision(client, "/le1", first, "weights", {"eu": 0})
    await publish_decision(client, "/le1", second, "weights", {"eu": 60})
    _, decisions = await read_decisions(client, "/le1")
    assert decisions == {"weights": {"eu": 60}}
    await b.resign()
    await client.aclose()


def test_killing_the_leader_process_moves_leadership(etcd: EtcdCluster, tmp_path: Path) -> None:
    endpoints = ",".join(etcd.endpoints)
    client = EtcdClient(etcd.endpoints)

    def leader() -> str | None:
        kv = client.range_sync("/le2/leader").kvs
        return kv[0].value.decode() if kv else None

    def decision_by() -> str | None:
        kvs = client.range_sync("/le2/decisions/counter").kvs
        return str(json.loads(kvs[0].value)["by"]) if kvs else None

    def wait(predicate: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise AssertionError(f"{what} not within {timeout}s")

    argv = [sys.executable, "-m", "tests.support.leader_proc", endpoints, "/le2"]
    with (
        running([*argv, "r1", str(TTL_S)], log=tmp_path / "r1.log", cwd=REPO) as r1,
        running([*argv, "r2", str(TTL_S)], log=tmp_path / "r2.log", cwd=REPO) as r2,
    ):
        wait(lambda: leader() in ("r1", "r2") and decision_by() == leader(), 20, "a leader")
        first = leader()
        procs = {"r1": r1, "r2": r2}
        procs[str(first)].send_signal(signal.SIGKILL)
        procs[str(first)].wait(5)
        other = "r2" if first == "r1" else "r1"
        # the lease expires after TTL_S; the watcher then wins at once (slack for the poll)
        wait(lambda: leader() == other, TTL_S + 2, f"leadership moving to {other}")
        wait(lambda: decision_by() == other, 5, f"{other} publishing")
        assert procs[other].poll() is None
        assert f"LEADER {other}" in (tmp_path / f"{other}.log").read_text()


async def test_a_leader_cut_off_from_etcd_steps_down(tmp_path: Path) -> None:
    with etcd_cluster(tmp_path / "etcd") as alone:
        client = EtcdClient(alone.endpoints, timeout=1)
        election = LeaderElection(client, "/le3", "a", ttl_s=TTL_S)
        await election.campaign()
        assert not election.lost.is_set()
        alone.members[0].kill()
        # it cannot confirm its lease any more: it must give up leadership after one TTL
        await asyncio.wait_for(election.lost.wait(), TTL_S * 4)
        assert election.leadership is None
        await election.resign()
        await client.aclose()
