"""A real Envoy reaching Ubiq's xDS over mTLS (the bootstrap's TLS transport socket): it connects,
serves routes, and keeps its stream while the server's certificate and client CA are rotated."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.node import group_key
from controlplane.xds.server import XdsServer
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import StatusRegistry
from controlplane.xds.tls import ReloadingTls
from tests.support.envoy import EnvoyProcess, envoy, http_backend
from tests.support.pki import TestPki
from tests.support.poll import wait_until
from tests.support.procs import free_port
from tests.support.xds_resources import ROUTE_HEADER, make_resources
from tests.support.xds_rig import wait_acked, xds_server_thread

pytestmark = pytest.mark.integration

CLUSTER_NAME = "eu-west-1"
NODE_ID = "envoy-tls"


def served_cert(port: int, pki: TestPki) -> x509.Certificate:
    """The certificate a new TLS handshake with the xDS server gets (as a node would see it)."""
    pair = pki.node(CLUSTER_NAME, "probe")
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pair.cert), str(pair.key))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_envoy_over_mtls_serves_routes_and_keeps_its_stream_through_rotation(
    tmp_path: Path,
) -> None:
    pki = TestPki(tmp_path / "pki")
    files = pki.server_files()
    tls = ReloadingTls(files)
    cache, status = SnapshotCache(), StatusRegistry()
    listener_port = free_port()
    with (
        http_backend("a") as port_a,
        xds_server_thread(XdsServer(cache, status=status, tls=tls)) as xds,
        envoy(tmp_path, xds_port=xds.port, node_id=NODE_ID, cluster=CLUSTER_NAME,
              tls=pki.envoy_tls(CLUSTER_NAME, NODE_ID)) as proxy,
    ):  # fmt: skip

        def publish(tag: str) -> Snapshot:
            snapshot = Snapshot.build(make_resources(listener_port, {"a": [port_a]}, "a", tag))
            cache.set_snapshot(group_key(CLUSTER_NAME), snapshot)
            return snapshot

        def wait_served(tag: str) -> None:
            def served() -> bool:
                reply = httpx.get(f"http://127.0.0.1:{listener_port}/", timeout=2)
                return reply.headers.get(ROUTE_HEADER) == tag and reply.text == "a"

            wait_until(served, 15, f"traffic through route {tag}")

        first = publish("v1")
        wait_acked(status, NODE_ID, first)
        wait_served("v1")
        assert proxy.stat("control_plane.connected_state") == 1
        assert proxy.stat("cluster.ubiq_xds.ssl.handshake") >= 1  # it is TLS
        connections = proxy.stat("cluster.ubiq_xds.upstream_cx_total")
        assert connections >= 1
        old_serial = served_cert(xds.port, pki).serial_number

        # rotate: a new server certificate (new key) and a client CA bundle with a second CA,
        # written over the files the server was started with
        renewed = pki.server("renewed")
        other = TestPki(tmp_path / "next-ca")
        files.cert.write_bytes(renewed.cert_pem)
        files.key.write_bytes(renewed.key_pem)
        files.client_ca.write_bytes(pki.ca.read_bytes() + other.ca.read_bytes())

        # a new connection gets the new certificate ...
        new_cert = served_cert(xds.port, pki)
        assert (
            new_cert.serial_number == x509.load_pem_x509_certificate(renewed.cert_pem).serial_number
        )
        assert new_cert.serial_number != old_serial
        assert tls.reloads == 1

        # ... while Envoy's stream stays: the next push is ACKed and served on the same
        # connection, with no reconnect
        second = publish("v2")
        wait_acked(status, NODE_ID, second)
        wait_served("v2")
        assert proxy.stat("control_plane.connected_state") == 1
        assert proxy.stat("cluster.ubiq_xds.upstream_cx_total") == connections
        (proxy_status,) = [p for p in status.proxies() if p.node_id == NODE_ID]
        assert proxy_status.last_nack is None


def certs_in_use(proxy: EnvoyProcess) -> set[int]:
    """Serial numbers of the certificates Envoy's TLS contexts hold (admin ``/certs``)."""
    reply = httpx.get(f"{proxy.admin}/certs", timeout=5)
    reply.raise_for_status()
    serials = set()
    for context in reply.json().get("certificates", []):
        for cert in context.get("cert_chain", []):
            serials.add(int(cert["serial_number"], 16))
    return serials


def test_envoys_node_certificate_is_rotated_live_through_file_sds(tmp_path: Path) -> None:
    pki = TestPki(tmp_path / "pki")
    tls_files = pki.envoy_tls(CLUSTER_NAME, NODE_ID, sds=True)
    first = x509.load_pem_x509_certificate(Path(tls_files.cert).read_bytes())
    cache, status = SnapshotCache(), StatusRegistry()
    listener_port = free_port()
    with (
        http_backend("a") as port_a,
        xds_server_thread(XdsServer(cache, status=status, tls=ReloadingTls(pki.server_files()))) as xds,
        envoy(tmp_path, xds_port=xds.port, node_id=NODE_ID, cluster=CLUSTER_NAME, tls=tls_files) as proxy,
    ):  # fmt: skip

        def publish(tag: str) -> Snapshot:
            snapshot = Snapshot.build(make_resources(listener_port, {"a": [port_a]}, "a", tag))
            cache.set_snapshot(group_key(CLUSTER_NAME), snapshot)
            return snapshot

        wait_acked(status, NODE_ID, publish("v1"))
        assert first.serial_number in certs_in_use(proxy)
        connections = proxy.stat("cluster.ubiq_xds.upstream_cx_total")

        renewed = pki.renew_node(CLUSTER_NAME, NODE_ID)
        wait_until(
            lambda: renewed.serial_number in certs_in_use(proxy), 15, "Envoy holding the new cert"
        )
        assert first.serial_number not in certs_in_use(proxy)
        # the stream was not dropped: the next push is ACKed on the same connection
        wait_acked(status, NODE_ID, publish("v2"))
        assert proxy.stat("cluster.ubiq_xds.upstream_cx_total") == connections
        assert proxy.stat("control_plane.connected_state") == 1
