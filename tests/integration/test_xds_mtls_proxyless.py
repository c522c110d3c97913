"""A proxyless gRPC client reaching Ubiq's xDS over mTLS with the bootstrap `ubiq bootstrap --grpc
--xds-tls-*` writes (gRPC's ``tls`` channel credentials): it gets its configuration and calls
the backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.xds.tls import ReloadingTls
from tests.support.grpc_backends import grpc_backends
from tests.support.pki import TestPki
from tests.support.poll import wait_until
from tests.support.procs import running
from tests.support.xds_rig import runtime_thread

from .test_xds_proxyless_grpc import CLIENT_ID, GROUP, NODE, ROOT, model_for

pytestmark = pytest.mark.integration


def test_proxyless_client_over_mtls(tmp_path: Path) -> None:
    pki = TestPki(tmp_path / "pki")
    pair = pki.node(NODE.cluster, CLIENT_ID)
    log = tmp_path / "client.log"
    with (
        grpc_backends("echo-a") as backends,
        runtime_thread(
            model_for(backends["echo-a"].port), tls=ReloadingTls(pki.server_files())
        ) as (runtime, xds_port, _),
    ):
        bootstrap = subprocess.run(
            [sys.executable, "-m", "controlplane.cli", "bootstrap", "--grpc",
             "--node-id", CLIENT_ID, "--cluster", NODE.cluster, "--region", NODE.region,
             "--xds", f"127.0.0.1:{xds_port}", "--xds-tls-cert", str(pair.cert),
             "--xds-tls-key", str(pair.key), "--xds-tls-ca", str(pki.ca)],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert '"type": "tls"' in bootstrap
        # at most 200 calls, 50 ms apart: the client is still connected when we look
        argv = [sys.executable, "-m", "tests.support.grpc_calls", "xds:///echo.test", "200", "-"]
        env = {"GRPC_XDS_BOOTSTRAP_CONFIG": bootstrap, "PYTHONPATH": str(ROOT)}

        def calls() -> list[str]:
            lines = log.read_text().splitlines() if log.exists() else []
            return [line for line in lines if line.startswith(("ok", "err"))]

        with running([*argv, "0.05"], log=log, env=env, cwd=ROOT):
            wait_until(lambda: len(calls()) >= 3, 40, "three calls via xDS over mTLS")
            proxies = runtime.status.proxies()
            assert any(p.node_id == CLIENT_ID and p.group == GROUP for p in proxies), proxies
        assert set(calls()) == {"ok echo-a -"}
