"""The feedback loop on one replica at a time: three `ubiq serve --store etcd:// --prometheus`
replicas on a 3-member etcd cluster, each with a real Envoy attached. Only the elected leader runs
the loop and the canary controller; it publishes decisions and canary state to etcd and every
replica's Envoy serves what was published. Killing the leader moves the loop to another replica,
which resumes the canary where it was (same step, same step start) instead of starting it again.
Losing one etcd member before that changes nothing visible."""

from __future__ import annotations

import asyncio
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane.demo.envoys import EnvoyProcess, start_envoy
from controlplane.etcd.process import EtcdCluster
from controlplane.policy.etcd_store import EtcdStore
from tests.support.dns import dig
from tests.support.envoy import EnvoyProcess as EnvoyAdmin
from tests.support.etcd import etcd_cluster
from tests.support.poll import wait_until
from tests.support.procs import free_port, require_binary, running, wait_for_port
from tests.support.prometheus import prometheus
from tests.support.replicas import API_TOKEN, AUTH, Replica, logs_on_failure, xds_versions

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"
TTL_S = 2
CANARY = "checkout-v2"


@pytest.fixture(autouse=True)
def _api_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ubiq serve and ubiq CLI started here holds the write token (from the environment)."""
    monkeypatch.setenv("UBIQ_API_TOKEN", API_TOKEN)


def policies(tmp_path: Path) -> Path:
    """The example with no health checks (no gateways run here) and canary steps whose first
    weight (30 %) differs from the RoutePolicy's own 90/10 split, so serving it shows it came
    from the canary state."""
    root = tmp_path / "policies"
    shutil.copytree(EXAMPLE, root)
    gs = root / "global.yaml"
    text = "\n".join(x for x in gs.read_text().splitlines() if "healthCheck" not in x)
    assert "steps: [10, 25, 50, 100]" in text
    gs.write_text(text.replace("steps: [10, 25, 50, 100]", "steps: [30, 60, 100]"))
    return root


def api_route_weights(envoy: EnvoyProcess) -> list[int]:
    """The weights of RoutePolicy checkout's rule ``api`` as this Envoy holds them (its RDS)."""
    dump = EnvoyAdmin(envoy.admin_port, envoy.log, "").config_dump("dynamic_route_configs")
    found: list[int] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            clusters = node.get("route", {}).get("weighted_clusters", {}).get("clusters")
            if node.get("name") == "checkout/api" and clusters:
                found.extend(sorted(int(c.get("weight", 0)) for c in clusters))
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dump)
    return found


def replica_state(r: Replica) -> dict[str, Any]:
    return dict(r.get("/v1/placement")["replica"])


def canary(r: Replica) -> dict[str, Any]:
    return dict(r.get("/v1/canaries")[CANARY])


def test_only_the_leader_runs_the_loop_and_a_new_leader_resumes(tmp_path: Path) -> None:
    require_binary("envoy")
    root = policies(tmp_path)
    with ExitStack() as stack:
        etcd: EtcdCluster = stack.enter_context(etcd_cluster(tmp_path / "etcd", 3))
        url = etcd.url("/ubiq")
        asyncio.run(EtcdStore.from_url(url).import_directory(root))
        prom = stack.enter_context(prometheus(tmp_path, []))
        listener = free_port()
        replicas = [
            Replica(
                f"r{i}",
                url,
                listener,  # the same on all: identical LDS (Envoy binds it with SO_REUSEPORT)
                tmp_path / f"r{i}.log",
                extra=[
                    "--prometheus",
                    prom.url,
                    "--feedback-interval",
                    "1",
                    "--replica-name",
                    f"r{i}",
                    "--leader-ttl",
                    str(TTL_S),
                ],
            )
            for i in range(3)
        ]
        procs = {r.name: stack.enter_context(running(r.argv(), log=r.log)) for r in replicas}
        stack.enter_context(logs_on_failure(replicas))
        for r in replicas:
            wait_for_port("127.0.0.1", r.api_port, 30)
        envoys = {}
        for r in replicas:
            workdir = tmp_path / f"envoy-{r.name}"
            workdir.mkdir()
            envoys[r.name] = start_envoy(
                workdir,
                cluster="eu-west",
                region="eu-west",
                zone="eu-west-1a",
                xds_port=r.xds,
                node_id=f"envoy-{r.name}",
            )
            stack.callback(envoys[r.name].stop)

        # one leader, known to every replica; only it runs the loop
        def one_leader(among: list[Replica]) -> str | None:
            seen = [replica_state(r) for r in among]
            leaders = {s["leader"] for s in seen}
            roles = sorted(s["role"] for s in seen)
            if len(leaders) == 1 and None not in leaders and roles.count("leader") == 1:
                return str(leaders.pop())
            return None

        wait_until(lambda: one_leader(replicas), 30, "one leader known to every replica")
        leader_name = one_leader(replicas)
        leader = next(r for r in replicas if r.name == leader_name)
        assert replica_state(leader)["role"] == "leader"

        # the canary started once, on the leader; every replica shows and serves that state
        wait_until(
            lambda: (
                len({canary(r)["stepStartedAt"] for r in replicas}) == 1
                and canary(leader)["weight"] == 30
            ),
            20,
            "the leader's canary state on every replica",
        )
        before = canary(leader)
        assert before["step"] == 0 and before["phase"] == "progressing"
        wait_until(
            lambda: all(api_route_weights(envoys[r.name]) == [30, 70] for r in replicas),
            20,
            "every replica's Envoy serving the published canary weights 70/30",
        )
        decision = leader.get("/v1/placement")["decisions"]["checkout"]
        wait_until(
            lambda: all(
                r.get("/v1/placement")["decisions"]["checkout"]["weights"] == decision["weights"]
                for r in replicas
            ),
            10,
            "every replica serving the leader's placement decision",
        )
        assert len({xds_versions(r.xds, "eu-west") for r in replicas}) == 1

        # losing the etcd member every replica talks to first changes nothing visible: the leader
        # keeps its lease, a canary command given after the loss is published, and every replica
        # follows it (the pause is the event that must come after the member's death)
        published = max(replica_state(r)["publishedRevision"] for r in replicas)
        etcd.members[0].kill()
        follower = next(r for r in replicas if r is not leader)
        refused = httpx.post(f"{follower.api}/v1/canaries/{CANARY}/pause", headers=AUTH, timeout=5)
        assert refused.status_code == 409 and leader.name in refused.text, refused.text
        paused = httpx.post(f"{leader.api}/v1/canaries/{CANARY}/pause", headers=AUTH, timeout=5)
        assert paused.status_code == 200, paused.text
        wait_until(
            lambda: all(
                canary(r)["phase"] == "paused" and replica_state(r)["publishedRevision"] > published
                for r in replicas
            ),
            20,
            "the paused canary published after losing an etcd member, seen by every replica",
        )
        assert one_leader(replicas) == leader.name
        assert canary(leader)["stepStartedAt"] == before["stepStartedAt"]
        assert all(api_route_weights(envoys[r.name]) == [30, 70] for r in replicas)
        before = canary(leader)

        # the leader dies: another one leads within the lease TTL and resumes the canary
        procs[leader.name].kill()
        procs[leader.name].wait(5)
        survivors = [r for r in replicas if r is not leader]
        wait_until(
            lambda: one_leader(survivors) not in (None, leader.name),
            TTL_S * 4,
            "a new leader among the survivors",
        )
        successor = next(r for r in survivors if replica_state(r)["role"] == "leader")
        after = canary(successor)
        assert (after["step"], after["weight"], after["stepStartedAt"]) == (
            before["step"],
            before["weight"],
            before["stepStartedAt"],
        )
        assert after["phase"] == "paused"  # a restarted canary would be progressing again
        assert after["events"][0] == before["events"][0]  # resumed, not started again
        assert not any(e["kind"] == "started" for e in after["events"][1:])
        # the successor publishes: the other survivor follows its state
        other = next(r for r in survivors if r is not successor)
        wait_until(
            lambda: (
                replica_state(other)["publishedRevision"]
                > replica_state(successor)["publishedRevision"] - 1
                and canary(other)["stepStartedAt"] == before["stepStartedAt"]
            ),
            10,
            "the follower on the new leader's published state",
        )
        for r in survivors:
            assert api_route_weights(envoys[r.name]) == [30, 70]
        resumed = httpx.post(
            f"{successor.api}/v1/canaries/{CANARY}/resume", headers=AUTH, timeout=5
        )
        assert resumed.status_code == 200 and resumed.json()["phase"] == "progressing"
        wait_until(
            lambda: canary(other)["phase"] == "progressing", 10, "the resumed canary published"
        )
        assert len({xds_versions(r.xds, "eu-west") for r in survivors}) == 1
        answers = {
            tuple(
                dig(
                    "127.0.0.1", r.dns, "checkout.gtm.example", "A", "+subnet=203.0.113.0/24"
                ).answer
            )
            for r in survivors
        }
        assert len(answers) == 1 and answers.pop()
