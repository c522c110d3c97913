"""`ubiq serve --xds-tls-*` with certificates made by `ubiq certs`: a real Envoy holding its
node's certificate gets its cluster's configuration; one reusing that certificate to claim
another cluster gets PERMISSION_DENIED and no configuration; `ubiq bootstrap` writes the TLS
transport socket that Envoy accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from controlplane.pki.certs import server_spiffe_id
from controlplane.xds.bootstrap import XdsClientTls
from tests.support.cli import ubiq
from tests.support.envoy import dynamic_names, envoy
from tests.support.poll import wait_until
from tests.support.procs import free_port, free_udp_tcp_port, require_binary, running

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"
TD = "e2e.test"


def make_pki(pki: Path) -> None:
    ca = ["--ca", str(pki / "ca.pem"), "--ca-key", str(pki / "ca-key.pem")]
    for args in (
        ["ca", "--trust-domain", TD, "--out", str(pki / "ca")],
        ["server", *ca, "--ip", "127.0.0.1", "--out", str(pki / "xds")],
        ["node", *ca, "--node-id", "envoy-eu", "--cluster", "eu-west", "--out", str(pki / "eu")],
    ):
        out = ubiq("certs", *args)
        assert out.returncode == 0, out.stderr
    assert (pki / "ca-key.pem").stat().st_mode & 0o077 == 0  # keys are private


def test_serve_over_mtls_gives_each_proxy_only_its_cluster(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    make_pki(pki)
    xds, api = free_port(), free_port()
    argv = [
        sys.executable, "-m", "controlplane.cli", "--log-format", "json", "serve", str(EXAMPLE),
        "--xds", f"127.0.0.1:{xds}", "--api", f"127.0.0.1:{api}",
        "--dns", f"127.0.0.1:{free_udp_tcp_port()}", "--listener-port", str(free_port()),
        "--listener-address", "127.0.0.1",
        "--xds-tls-cert", str(pki / "xds.pem"), "--xds-tls-key", str(pki / "xds-key.pem"),
        "--xds-tls-client-ca", str(pki / "ca.pem"),
    ]  # fmt: skip
    log = tmp_path / "ubiq.log"
    tls = XdsClientTls(
        cert=str(pki / "eu.pem"),
        key=str(pki / "eu-key.pem"),
        ca=str(pki / "ca.pem"),
        server_id=server_spiffe_id(TD),
    )
    for workdir in ("eu", "intruder"):
        (tmp_path / workdir).mkdir()
    with running(argv, log=log) as proc:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{api}/readyz", timeout=1).status_code == 200,
            30,
            "ubiq serve ready",
        )
        assert proc.poll() is None
        with envoy(
            tmp_path / "eu", xds_port=xds, node_id="envoy-eu", cluster="eu-west", tls=tls
        ) as good:
            wait_until(
                lambda: "payments" in dynamic_names(good.config_dump(), "clusters"),
                20,
                "eu-west's clusters at the rightful Envoy",
            )
            # the same certificate, the same node id, claiming us-west
            with envoy(
                tmp_path / "intruder", xds_port=xds, node_id="envoy-eu", cluster="us-west", tls=tls
            ) as intruder:
                wait_until(
                    lambda: (
                        "xds.permission_denied" in log.read_text() and "us-west" in log.read_text()
                    ),
                    20,
                    "the intruder's stream refused",
                )
                assert intruder.stat("cluster.ubiq_xds.ssl.handshake") >= 1  # it did connect
                assert dynamic_names(intruder.config_dump(), "clusters") == []
                assert dynamic_names(intruder.config_dump(), "listeners") == []
            proxies = httpx.get(f"http://127.0.0.1:{api}/v1/proxies", timeout=5).json()
            rows = proxies if isinstance(proxies, list) else proxies.get("proxies", [])
            assert {(p["nodeId"], p["group"]) for p in rows} == {("envoy-eu", "eu-west/proxy")}


def test_bootstrap_with_tls_is_accepted_by_envoy(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    make_pki(pki)
    target = tmp_path / "bootstrap.yaml"
    out = ubiq(
        "bootstrap", "--node-id", "envoy-eu", "--cluster", "eu-west", "--region", "eu-west",
        "--xds-tls-cert", str(pki / "eu.pem"), "--xds-tls-key", str(pki / "eu-key.pem"),
        "--xds-tls-ca", str(pki / "ca.pem"), "-o", str(target),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = target.read_text()
    assert str(pki / "eu-key.pem") in text and server_spiffe_id(TD) in text
    check = subprocess.run(
        [require_binary("envoy"), "--mode", "validate", "-c", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    sds = tmp_path / "xds-client-sds.json"
    out = ubiq(
        "bootstrap", "--node-id", "envoy-eu", "--cluster", "eu-west", "--region", "eu-west",
        "--xds-tls-cert", str(pki / "eu.pem"), "--xds-tls-key", str(pki / "eu-key.pem"),
        "--xds-tls-ca", str(pki / "ca.pem"), "--xds-tls-sds-file", str(sds), "-o", str(target),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert str(sds) in target.read_text() and str(pki / "eu-key.pem") in sds.read_text()
    check = subprocess.run(
        [require_binary("envoy"), "--mode", "validate", "-c", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    wrong = ubiq(
        "bootstrap", "--node-id", "envoy-us", "--cluster", "us-west", "--region", "us-west",
        "--xds-tls-cert", str(pki / "eu.pem"), "--xds-tls-key", str(pki / "eu-key.pem"),
        "--xds-tls-ca", str(pki / "ca.pem"),
    )  # fmt: skip
    assert wrong.returncode == 1
    assert wrong.stderr.strip().startswith("ubiq: error: --xds-tls-cert ")
    assert "issued for node 'envoy-eu' in cluster 'eu-west'" in wrong.stderr
