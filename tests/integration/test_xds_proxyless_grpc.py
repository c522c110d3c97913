"""grpcio's own xDS client as a second, proxyless consumer of Ubiq's ADS server (SotW).

The product path: ``XdsRuntime`` (what ``ubiq serve`` runs) compiles the policy and, because a
service speaks gRPC, also publishes a ``<cluster>/grpc`` group whose LDS holds API listeners.
The client runs in a subprocess with the bootstrap ``ubiq bootstrap --grpc`` prints (it must be
in the environment before grpc starts xDS), target ``xds:///echo.test``: LDS gives it the API
listener, RDS Ubiq's route configuration, then CDS and EDS the compiled cluster and its
endpoints. It prints one line per call naming the backend.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.policy.loader import load_texts
from controlplane.policy.model import Model
from controlplane.xds.compiler import NodeIdentity
from controlplane.xds.node import group_key
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.support.grpc_backends import grpc_backends
from tests.support.policy import GRPC_PORT, cluster, join, route, service
from tests.support.poll import wait_until
from tests.support.procs import running
from tests.support.xds_rig import runtime_thread, wait_acked

pytestmark = pytest.mark.integration

NODE = NodeIdentity("eu-west", "eu-west", "eu-west-1a", role="grpc")
GROUP = group_key(NODE.cluster, NODE.role)
CLIENT_ID = "proxyless-1"
ROOT = Path(__file__).resolve().parents[2]
CLIENT_SECONDS = 40.0


def policy_text(port: int) -> str:
    echo = service("echo", GRPC_PORT, f"[{{cluster: eu-west, address: 127.0.0.1, port: {port}}}]")
    return join(
        cluster("eu-west", "eu-west-1a"), echo, route("echo", "echo.test", "echo", "/demo.Echo/")
    )


def model_for(port: int) -> Model:
    return load_texts([("proxyless.yaml", policy_text(port))])


def bootstrap(xds_port: int) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "bootstrap", "--grpc", "--node-id", CLIENT_ID,
         "--cluster", NODE.cluster, "--region", NODE.region, "--zone", NODE.zone,
         "--xds", f"127.0.0.1:{xds_port}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout


@dataclass
class ClientLog:
    path: Path

    def lines(self) -> list[str]:
        text = self.path.read_text(errors="replace") if self.path.exists() else ""
        return [line for line in text.splitlines() if line.startswith(("ok ", "err "))]

    def served(self) -> list[str]:
        return [line.split()[1] for line in self.lines() if line.startswith("ok ")]


@pytest.fixture
def client_log(tmp_path: Path) -> Iterator[ClientLog]:
    log = ClientLog(tmp_path / "client.log")
    yield log
    if log.path.exists():
        sys.stderr.write(f"--- proxyless client output (tail) ---\n{log.path.read_text()[-3000:]}")


def test_proxyless_client_follows_ubiq_endpoints(tmp_path: Path, client_log: ClientLog) -> None:
    with grpc_backends("echo-a", "echo-b") as backends:
        with runtime_thread(model_for(backends["echo-a"].port)) as (runtime, xds_port, loop):
            assert GROUP in runtime.cache.groups()  # a gRPC service: a proxyless group too
            first = runtime.cache.get(GROUP)
            assert first is not None
            argv = [sys.executable, "-m", "tests.support.grpc_backends"]
            argv += ["xds:///echo.test", str(CLIENT_SECONDS)]
            env = {"GRPC_XDS_BOOTSTRAP_CONFIG": bootstrap(xds_port), "PYTHONPATH": str(ROOT)}
            with running(argv, log=client_log.path, env=env, cwd=ROOT) as proc:
                wait_until(lambda: client_log.served().count("echo-a") >= 5, 20, "calls via xDS")
                wait_acked(runtime.status, CLIENT_ID, first, group=GROUP, mode="sotw")
                assert backends["echo-a"].count >= 5 and backends["echo-b"].count == 0

                # the policy now names echo-b's port: Ubiq pushes only new endpoints
                update = runtime.update_model(model_for(backends["echo-b"].port))
                asyncio.run_coroutine_threadsafe(update, loop).result(20)
                second = runtime.cache.get(GROUP)
                assert second is not None and second is not first
                changed = [t for t in (LISTENER, ROUTE, CLUSTER, ENDPOINT)
                           if first.type_version(t) != second.type_version(t)]  # fmt: skip
                assert changed == [ENDPOINT]
                moved_at = len(client_log.served())
                wait_until(
                    lambda: "echo-b" in client_log.served()[moved_at:],
                    20,
                    "traffic moved to echo-b",
                )
                switched = len(client_log.served())
                wait_until(lambda: len(client_log.served()) >= switched + 10, 10, "10 more calls")
                assert set(client_log.served()[switched:]) == {"echo-b"}
                wait_acked(runtime.status, CLIENT_ID, second, group=GROUP, mode="sotw")
                assert proc.poll() is None, "client exited early"
            envoy_group = runtime.cache.get(group_key(NODE.cluster))
            assert envoy_group is not None  # Envoys of the cluster keep their socket listener
            assert set(envoy_group.get(LISTENER).entries) == {"ubiq-http"}
        errors = [line for line in client_log.lines() if line.startswith("err ")]
        assert errors == [], errors[:5]
