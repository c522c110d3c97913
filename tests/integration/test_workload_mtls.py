"""Workload mTLS across clusters through real Envoys: a TrafficPolicy ``tls: {mode: ISTIO_MUTUAL}``
makes eu-west's gateway Envoy reach the service's us-west endpoints only through us-west's
east-west gateway listener, over mTLS with certificates Ubiq issues and serves over SDS.
Plaintext and certificate-less connections to that listener are refused; certificates are
re-issued before expiry and pushed under a bounded request loop with zero failed requests."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import socket
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from controlplane.demo.envoys import EnvoyProcess, start_envoy
from controlplane.demo.envoys import wait_ready as wait_envoy
from controlplane.pki.certs import Authority, create_ca
from controlplane.policy.loader import load_texts
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.compiler.options import CompileOptions
from controlplane.xds.resources import SECRET
from controlplane.xds.runtime import XdsRuntime
from controlplane.xds.server import XdsServer
from controlplane.xds.status import StatusRegistry
from controlplane.xds.sync_state import overall, proxy_sync
from controlplane.xds.workload_certs import WorkloadCerts
from tests.support.backends import Backend
from tests.support.loop import loop_thread
from tests.support.poll import wait_until
from tests.support.procs import free_port, require_binary

pytestmark = pytest.mark.integration

HOST = "secure.mesh.example"
SNI = "outbound_.8080_._.secure.ubiq"
LISTENER_STAT = "listener.{}_{}.{}"
POLICY = """\
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {{name: eu-west}}
spec: {{region: eu-west, zone: eu-west-1a, gateway: {{address: {eu_gw}, port: {eu_http}, mtlsPort: {eu_mtls}}}}}
---
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {{name: us-west}}
spec: {{region: us-west, zone: us-west-1a, gateway: {{address: {us_gw}, port: {us_http}, mtlsPort: {us_mtls}}}}}
---
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: secure}}
spec:
  ports: [{{port: 8080}}]
  endpoints: [{{cluster: us-west, address: 127.0.0.1, port: {backend}}}]
---
apiVersion: ubiq.io/v1alpha1
kind: TrafficPolicy
metadata: {{name: secure}}
spec:
  service: secure
  tls: {{mode: ISTIO_MUTUAL}}
{pool}
---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {{name: secure}}
spec:
  hosts: [{host}]
  http:
  - route: [{{service: secure}}]
"""


@dataclass
class Rig:
    certs: WorkloadCerts
    runtime: XdsRuntime
    eu: EnvoyProcess
    us: EnvoyProcess
    eu_http: tuple[str, int]
    us_mtls: tuple[str, int]
    backend: Backend
    ca_pem: bytes

    def get(self, client: httpx.Client) -> httpx.Response:
        host, port = self.eu_http
        return client.get(f"http://{host}:{port}/", headers={"host": HOST})


@contextlib.contextmanager
def rig(tmp_path: Path, ttl: dt.timedelta, pool: str = "") -> Iterator[Rig]:
    require_binary("envoy")
    net = random.Random().randint(100, 250)
    eu_gw, us_gw = f"127.{net}.1.1", f"127.{net}.2.1"
    ports = {
        "eu_http": free_port(eu_gw),
        "eu_mtls": free_port(eu_gw),
        "us_http": free_port(us_gw),
        "us_mtls": free_port(us_gw),
    }
    ca = create_ca("mesh.test")
    authority = Authority.load(ca.cert_pem, ca.key_pem)
    certs = WorkloadCerts(authority, ttl=ttl)
    backend = Backend("secure-us").start()
    model = load_texts(
        [
            (
                "mesh.yaml",
                POLICY.format(
                    eu_gw=eu_gw, us_gw=us_gw, backend=backend.port, host=HOST, pool=pool, **ports
                ),
            )
        ]
    )
    options = CompileOptions(
        listener_addresses={"eu-west": eu_gw, "us-west": us_gw},
        listener_ports={"eu-west": ports["eu_http"], "us-west": ports["us_http"]},
        workload_trust_domain=authority.trust_domain,
    )
    with contextlib.ExitStack() as stack:
        stack.callback(backend.close)
        lt = stack.enter_context(loop_thread("xds-runtime"))
        cache, status = SnapshotCache(), StatusRegistry()
        runtime = XdsRuntime(
            cache, status, XdsServer(cache, status=status), options, workload_certs=certs
        )
        xds_port = lt.run(runtime.start("127.0.0.1:0", model), 20)
        stack.callback(lambda: lt.run(runtime.stop(), 10))
        envoys = []
        for cluster, region in (("eu-west", "eu-west"), ("us-west", "us-west")):
            workdir = tmp_path / cluster
            workdir.mkdir()
            proxy = start_envoy(
                workdir,
                cluster=cluster,
                region=region,
                zone=f"{region}-1a",
                xds_port=xds_port,
                log_level="info",
            )
            stack.callback(proxy.stop)
            envoys.append(proxy)
        for proxy in envoys:
            wait_envoy(proxy)
        yield Rig(
            certs,
            runtime,
            envoys[0],
            envoys[1],
            (eu_gw, ports["eu_http"]),
            (us_gw, ports["us_mtls"]),
            backend,
            ca.cert_pem,
        )


def stat(proxy: EnvoyProcess, name: str) -> int:
    reply = httpx.get(
        f"http://127.0.0.1:{proxy.admin_port}/stats", params={"filter": name}, timeout=5
    )
    for line in reply.text.splitlines():
        key, _, value = line.partition(": ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0


def answer_without_client_certificate(r: Rig, request: bytes) -> bytes:
    context = ssl.create_default_context(cadata=r.ca_pem.decode())
    context.check_hostname = False
    try:
        with (
            socket.create_connection(r.us_mtls, timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=SNI) as tls,
        ):
            tls.sendall(request)
            return tls.recv(1024)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return b""


def test_mutual_tls_between_gateways_refuses_plaintext_and_serves_mtls(tmp_path: Path) -> None:
    with rig(tmp_path, dt.timedelta(hours=1)) as r, httpx.Client(timeout=5) as client:
        wait_until(lambda: r.get(client).status_code == 200, 30, "eu-west -> us-west over mTLS")
        reply = r.get(client)
        assert reply.headers["x-backend"] == "secure-us"
        # the hop went through us-west's east-west listener, as TLS, with a client certificate
        assert stat(r.us, "listener.{}_{}.ssl.handshake".format(*r.us_mtls)) >= 1
        assert stat(r.eu, "cluster.secure.ssl.handshake") >= 1

        def synced() -> bool:
            rows = [
                proxy_sync(p, r.runtime.cache.get(p.group), r.runtime.cache.groups())
                for p in r.runtime.status.proxies()
            ]
            return len(rows) == 2 and all(
                overall(x["sync"], x["problem"]) == "SYNCED" for x in rows
            )

        wait_until(synced, 15, "both Envoys SYNCED, SDS included")
        snapshot = r.runtime.cache.get("eu-west/proxy")
        assert snapshot is not None and set(snapshot.get(SECRET).entries) == {
            "ubiq-gateway-identity",
            "ubiq-workload-ca",
        }

        count = r.backend.count
        request = f"GET / HTTP/1.1\r\nhost: {HOST}\r\n\r\n".encode()
        # plaintext HTTP to the east-west listener: no TLS, no answer
        with socket.create_connection(r.us_mtls, timeout=10) as raw:
            raw.sendall(request)
            with contextlib.suppress(ConnectionResetError):
                assert raw.recv(1024) == b""  # closed without a byte of HTTP
        # TLS trusting the CA but with no client certificate: refused, no answer
        assert answer_without_client_certificate(r, request) == b""
        assert r.backend.count == count  # neither reached the backend
        assert r.get(client).status_code == 200  # the gateways still serve (after the refusals)
        assert r.backend.count == count + 1


def served_certificate(r: Rig) -> x509.Certificate:
    """The certificate us-west's east-west listener presents now, to a client holding a
    certificate from the workload CA."""
    client = r.certs.authority.issue("spiffe://mesh.test/probe", ttl=dt.timedelta(minutes=5))
    with tempfile.TemporaryDirectory() as d:
        cert, key = Path(d, "c.pem"), Path(d, "k.pem")
        cert.write_bytes(client.cert_pem)
        key.write_bytes(client.key_pem)
        context = ssl.create_default_context(cadata=r.ca_pem.decode())
        context.check_hostname = False
        context.load_cert_chain(str(cert), str(key))
    with (
        socket.create_connection(r.us_mtls, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SNI) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def issued_serial(r: Rig) -> int:
    secret = r.certs.current("us-west", "ubiq-workload|secure")
    assert secret is not None
    pem = secret.tls_certificate.certificate_chain.inline_bytes
    return x509.load_pem_x509_certificate(pem).serial_number


def test_certificates_rotate_under_load_with_zero_failed_requests(tmp_path: Path) -> None:
    """TTL 6 s, re-issued at half-life: each request opens a new upstream connection
    (maxRequestsPerConnection: 1), so handshakes keep using whatever SDS delivered last."""
    pool = "  connectionPool: {maxRequestsPerConnection: 1}"
    with rig(tmp_path, dt.timedelta(seconds=6), pool) as r, httpx.Client(timeout=5) as client:
        wait_until(lambda: r.get(client).status_code == 200, 30, "eu-west -> us-west over mTLS")
        first = issued_serial(r)
        handshakes = stat(r.us, LISTENER_STAT.format(*r.us_mtls, "ssl.handshake"))
        codes: dict[int, int] = {}
        serials = {first}
        for _ in range(20_000):  # bounded in count; ends once two re-issues were served
            status = r.get(client).status_code
            codes[status] = codes.get(status, 0) + 1
            serials.add(issued_serial(r))
            if len(serials) >= 3 and served_certificate(r).serial_number == issued_serial(r):
                break
        else:
            raise AssertionError(f"no two rotations within the loop: {len(serials)} serials")
        assert set(codes) == {200}, codes
        served = stat(r.us, LISTENER_STAT.format(*r.us_mtls, "ssl.handshake")) - handshakes
        assert served >= codes[200]  # every request was a new mTLS handshake
        assert stat(r.us, LISTENER_STAT.format(*r.us_mtls, "ssl.connection_error")) == 0
