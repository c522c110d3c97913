"""`ubiq serve` as the GTM, with a real recursive unbound in front (client-subnet on).

Two loopback source addresses in different client groups get different regions through unbound;
a third, known only to a GeoIP database named by the policy, is steered by it; killing the
backend behind the preferred region's health check moves the answer, restarting it brings it
back. The same process answers on an IPv6 listener, and its API explains and reports health.
"""

from __future__ import annotations

import http.server
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.dns import dig, unbound
from tests.support.gtm_helpers import TWO_REGIONS, write_mmdb
from tests.support.poll import wait_until
from tests.support.procs import free_port, free_udp_tcp_port, running, wait_for_port

NAME = "app.gtm.example"
EU, US = "127.0.0.21", "127.0.0.22"
EUROPE_CLIENT, AMERICA_CLIENT, GEOIP_CLIENT = "127.0.20.5", "127.0.30.5", "127.0.40.5"

POLICY = (
    TWO_REGIONS
    + """\
apiVersion: ubiq.io/v1alpha1
kind: GlobalService
metadata: {{name: app}}
spec:
  name: {name}
  zone: gtm.example
  service: app
  strategy: geo
  ttl: 1s
  targets:
  - {{cluster: eu-west, address: {eu}, port: {eu_port}}}
  - {{cluster: us-west, address: {us}, port: {us_port}, tier: 1}}
  clientGroups:
  - {{name: europe, cidrs: [127.0.20.0/24], region: eu-west}}
  - {{name: america, cidrs: [127.0.30.0/24], region: us-west}}
  geoDatabase: regions.mmdb
  healthCheck: {{http: {{path: /healthz}}, interval: 300ms, timeout: 200ms, unhealthyThreshold: 2, healthyThreshold: 1}}
"""
)


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Backend:
    """An HTTP backend that can be killed and started again on the same address and port."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = free_port(host)
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer((self.host, self.port), _Ok)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def kill(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    eu, us = Backend(EU), Backend(US)
    eu.start()
    us.start()
    try:
        yield eu, us
    finally:
        eu.kill()
        us.kill()


def write_policies(root: Path, eu: Backend, us: Backend) -> None:
    root.mkdir()
    text = POLICY.format(name=NAME, eu=EU, us=US, eu_port=eu.port, us_port=us.port)
    (root / "global.yaml").write_text(text)
    write_mmdb(root / "regions.mmdb", [("127.0.40.0/24", {"region": "us-west"})])


def test_gtm_serve_behind_unbound(tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    eu, us = backends
    root = tmp_path / "policies"
    write_policies(root, eu, us)
    dns_port, dns6_port = free_udp_tcp_port(), free_udp_tcp_port("::1")
    api_port, xds_port, resolver = free_port(), free_port(), free_udp_tcp_port()
    argv = [
        sys.executable, "-m", "controlplane.cli", "--log-format", "json", "serve", str(root),
        "--xds", f"127.0.0.1:{xds_port}", "--api", f"127.0.0.1:{api_port}",
        "--dns", f"127.0.0.1:{dns_port}", "--dns", f"[::1]:{dns6_port}",
    ]  # fmt: skip

    def via_unbound(source: str) -> list[str]:
        return dig("127.0.0.1", resolver, NAME, "A", "-b", source, "+rec").rdata("A")

    with running(argv, log=tmp_path / "ubiq.log"), unbound(tmp_path, resolver, dns_port):
        wait_for_port("127.0.0.1", api_port, 20)
        api = f"http://127.0.0.1:{api_port}"
        wait_until(
            lambda: all(r["healthy"] for r in httpx.get(f"{api}/v1/gtm/health").json()),
            10,
            "both targets healthy",
        )
        assert via_unbound(EUROPE_CLIENT) == [EU]
        assert via_unbound(AMERICA_CLIENT) == [US]
        assert via_unbound(GEOIP_CLIENT) == [US]  # only the GeoIP database knows this network

        # IPv6 listener, same answers (ECS picks the group)
        six = dig("::1", dns6_port, NAME, "A", "+subnet=127.0.30.0/24")
        assert six.status == "NOERROR" and six.rdata("A") == [US] and six.ecs_scope == 24
        glue = dig("::1", dns6_port, "ns1.gtm.example", "AAAA")
        assert glue.rdata("AAAA") == ["::1"]

        why = httpx.get(f"{api}/v1/gtm/explain", params={"name": NAME, "client": GEOIP_CLIENT})
        assert why.status_code == 200
        assert why.json()["group"]["region"] == "us-west"

        eu.kill()
        wait_until(lambda: via_unbound(EUROPE_CLIENT) == [US], 15, "europe moved to us-west")
        health = {r["cluster"]: r["healthy"] for r in httpx.get(f"{api}/v1/gtm/health").json()}
        assert health == {"eu-west": False, "us-west": True}
        assert via_unbound(AMERICA_CLIENT) == [US]

        eu.start()
        wait_until(lambda: via_unbound(EUROPE_CLIENT) == [EU], 15, "europe back on eu-west")
        assert via_unbound(AMERICA_CLIENT) == [US]
