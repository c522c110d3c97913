"""grpcio's own xDS client as a second, proxyless consumer of Ubiq's ADS server (SotW).

The client runs in a subprocess (its bootstrap must be in the environment before grpc starts
xDS), with target ``xds:///echo.test``: LDS gives it the API listener that
``build_api_listeners`` emits for the gRPC host, RDS Ubiq's route configuration, then CDS and
EDS the compiled cluster and its endpoints. It prints one line per call naming the backend.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.policy.loader import load_texts
from controlplane.xds.cache import SnapshotCache, group_key
from controlplane.xds.compiler import CompileOptions, NodeIdentity, compile_node_resources
from controlplane.xds.compiler.api_listeners import build_api_listeners
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.server import XdsServer
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import StatusRegistry
from tests.support.envoy import wait_until, xds_server_thread
from tests.support.grpc_backends import grpc_backends
from tests.support.procs import running

pytestmark = pytest.mark.integration

NODE = NodeIdentity("eu-west", "eu-west", "eu-west-1a", role="grpc")
GROUP = group_key(NODE.cluster, NODE.role)
CLIENT_ID = "proxyless-1"
ROOT = Path(__file__).resolve().parents[2]
CLIENT_SECONDS = 40.0


def policy_text(port: int) -> str:
    return f"""
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {{name: eu-west}}
spec: {{region: eu-west, zone: eu-west-1a}}
---
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: echo}}
spec:
  ports: [{{name: grpc, port: 9000, protocol: GRPC}}]
  endpoints: [{{cluster: eu-west, address: 127.0.0.1, port: {port}}}]
---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {{name: echo}}
spec:
  hosts: [echo.test]
  http: [{{match: [{{path: {{prefix: /demo.Echo/}}}}], route: [{{service: echo}}]}}]
"""


def build_snapshot(port: int) -> Snapshot:
    """Ubiq's compiled resources for a proxyless group: API listeners instead of sockets."""
    options = CompileOptions()
    model = load_texts([("proxyless.yaml", policy_text(port))])
    resources = dict(compile_node_resources(model, NODE, options))
    resources[LISTENER] = {lst.name: lst for lst in build_api_listeners(model, options)}
    snapshot = Snapshot.build(resources)
    snapshot.check_consistent()
    return snapshot


def bootstrap(xds_port: int) -> str:
    return json.dumps(
        {
            "xds_servers": [
                {
                    "server_uri": f"127.0.0.1:{xds_port}",
                    "channel_creds": [{"type": "insecure"}],
                    "server_features": ["xds_v3"],
                }
            ],
            "node": {
                "id": CLIENT_ID,
                "cluster": NODE.cluster,
                "locality": {"region": NODE.region, "zone": NODE.zone},
                "metadata": {"ubiq.cluster": NODE.cluster, "ubiq.role": NODE.role},
            },
        }
    )


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


def wait_acked(status: StatusRegistry, snapshot: Snapshot) -> None:
    def acked() -> bool:
        for p in status.snapshot():
            if p.node_id == CLIENT_ID:
                assert p.last_nack is None, p.last_nack
                assert (p.group, p.mode) == (GROUP, "sotw")
                types = (LISTENER, ROUTE, CLUSTER, ENDPOINT)
                return all(p.acked.get(t) == snapshot.type_version(t) for t in types)
        return False

    wait_until(acked, 20, f"{CLIENT_ID} ACK of LDS, RDS, CDS and EDS ({snapshot.version})")


def test_proxyless_client_follows_ubiq_endpoints(tmp_path: Path, client_log: ClientLog) -> None:
    cache, status = SnapshotCache(), StatusRegistry()
    with (
        grpc_backends("echo-a", "echo-b") as backends,
        xds_server_thread(XdsServer(cache, status=status)) as xds,
    ):
        first = build_snapshot(backends["echo-a"].port)
        cache.set_snapshot(GROUP, first)
        argv = [sys.executable, "-m", "tests.support.grpc_backends"]
        argv += ["xds:///echo.test", str(CLIENT_SECONDS)]
        env = {"GRPC_XDS_BOOTSTRAP_CONFIG": bootstrap(xds.port), "PYTHONPATH": str(ROOT)}
        with running(argv, log=client_log.path, env=env, cwd=ROOT) as proc:
            wait_until(lambda: client_log.served().count("echo-a") >= 5, 20, "calls via xDS")
            wait_acked(status, first)
            assert backends["echo-a"].count >= 5 and backends["echo-b"].count == 0

            second = build_snapshot(backends["echo-b"].port)
            changed = [t for t in (LISTENER, ROUTE, CLUSTER, ENDPOINT)
                       if first.type_version(t) != second.type_version(t)]  # fmt: skip
            assert changed == [ENDPOINT]
            cache.set_snapshot(GROUP, second)
            moved_at = len(client_log.served())
            wait_until(
                lambda: "echo-b" in client_log.served()[moved_at:], 20, "traffic moved to echo-b"
            )
            switched = len(client_log.served())
            wait_until(lambda: len(client_log.served()) >= switched + 10, 10, "10 more calls")
            assert set(client_log.served()[switched:]) == {"echo-b"}
            wait_acked(status, second)
            assert proc.poll() is None, "client exited early"
        errors = [line for line in client_log.lines() if line.startswith("err ")]
        assert errors == [], errors[:5]
