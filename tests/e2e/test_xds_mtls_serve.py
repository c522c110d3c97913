"""`ubiq serve --xds-tls-*` with certificates made by `ubiq certs`: a real Envoy holding its
node's certificate gets its cluster's configuration; one reusing that certificate to claim
another cluster gets PERMISSION_DENIED and no configuration; `ubiq bootstrap` writes the TLS
transport socket that Envoy accepts."""

from __future__ import annotations

from pathlib import Path

import httpx

from controlplane.pki.certs import server_spiffe_id
from controlplane.xds.bootstrap import XdsClientTls
from tests.support.cli import bootstrap, ubiq
from tests.support.envoy import dynamic_names, envoy
from tests.support.poll import wait_until
from tests.support.procs import free_port
from tests.support.ubiq_serve import EXAMPLE, serving

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
    flags = (
        "--listener-port", str(free_port()), "--listener-address", "127.0.0.1",
        "--xds-tls-cert", str(pki / "xds.pem"), "--xds-tls-key", str(pki / "xds-key.pem"),
        "--xds-tls-client-ca", str(pki / "ca.pem"),
    )  # fmt: skip
    tls = XdsClientTls(
        cert=str(pki / "eu.pem"),
        key=str(pki / "eu-key.pem"),
        ca=str(pki / "ca.pem"),
        server_id=server_spiffe_id(TD),
    )
    for workdir in ("eu", "intruder"):
        (tmp_path / workdir).mkdir()
    with serving(EXAMPLE, tmp_path, *flags) as served:
        xds, api, log = served.xds_port, served.api, served.log
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
            proxies = httpx.get(f"{api}/v1/proxies", timeout=5).json()
            rows = proxies if isinstance(proxies, list) else proxies.get("proxies", [])
            assert {(p["nodeId"], p["group"]) for p in rows} == {("envoy-eu", "eu-west/proxy")}


def test_bootstrap_with_tls_is_accepted_by_envoy(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    make_pki(pki)
    target = tmp_path / "bootstrap.yaml"
    eu = ("--node-id", "envoy-eu", "--cluster", "eu-west", "--region", "eu-west")
    tls = (
        "--xds-tls-cert", str(pki / "eu.pem"), "--xds-tls-key", str(pki / "eu-key.pem"),
        "--xds-tls-ca", str(pki / "ca.pem"),
    )  # fmt: skip
    bootstrap(target, *eu, *tls)
    text = target.read_text()
    assert str(pki / "eu-key.pem") in text and server_spiffe_id(TD) in text

    sds = tmp_path / "xds-client-sds.json"
    bootstrap(target, *eu, *tls, "--xds-tls-sds-file", str(sds))
    assert str(sds) in target.read_text() and str(pki / "eu-key.pem") in sds.read_text()

    wrong = ubiq(
        "bootstrap", "--node-id", "envoy-us", "--cluster", "us-west", "--region", "us-west", *tls
    )
    assert wrong.returncode == 1
    assert wrong.stderr.strip().startswith("ubiq: error: --xds-tls-cert ")
    assert "issued for node 'envoy-eu' in cluster 'eu-west'" in wrong.stderr
