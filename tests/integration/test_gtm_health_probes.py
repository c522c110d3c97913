"""Active health checks against real backends on loopback: HTTP, HTTPS, TCP, down and back up."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controlplane.gtm.health.checker import HealthChecker
from controlplane.gtm.health.probes import probe
from controlplane.gtm.health.state import CheckedTarget, HealthCheck
from controlplane.gtm.types import HealthView, Target
from tests.support.poll import until
from tests.support.procs import free_port, require_binary, running, wait_for_port

pytestmark = pytest.mark.integration

FAST: dict[str, Any] = {
    "interval": 0.1,
    "timeout": 0.5,
    "healthy_threshold": 2,
    "unhealthy_threshold": 2,
}


class Backend:
    """A tiny HTTP/1.1 server: fixed status, optional delay, records what it was asked."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> int:
        self.server = await asyncio.start_server(self._handle, host, 0, ssl=tls)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            await asyncio.sleep(self.delay)
            writer.write(
                f"HTTP/1.1 {self.status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode()
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self.handlers.discard(task)
            writer.close()


@contextlib.asynccontextmanager
async def backend(status: int = 200, delay: float = 0.0) -> AsyncIterator[tuple[Backend, int]]:
    b = Backend(status, delay)
    port = await b.start()
    try:
        yield b, port
    finally:
        await b.stop()


def target(
    port: int, cluster: str = "c1", address: str = "127.0.0.1", **check: object
) -> CheckedTarget:
    return CheckedTarget(Target(cluster, "eu-west", address, port), HealthCheck(**check))  # type: ignore[arg-type]


@contextlib.contextmanager
def http_server(port: int, directory: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    argv = [
        sys.executable,
        "-m",
        "http.server",
        str(port),
        "--bind",
        "127.0.0.1",
        "-d",
        str(directory),
    ]
    with running(argv, log=log) as proc:
        wait_for_port("127.0.0.1", port, timeout=10)
        yield proc


async def test_backend_goes_down_and_comes_back(tmp_path: Path) -> None:
    """A real backend process: stop it -> unhealthy after the threshold; restart -> healthy."""
    port = free_port()
    views: list[HealthView] = []
    ct = target(port, **FAST)
    hc = HealthChecker([ct], views.append, registry=CollectorRegistry())
    async with hc:
        with http_server(port, tmp_path, tmp_path / "http1.log"):
            await until(lambda: ct.key in hc.view().healthy)
        await until(lambda: ct.key in hc.view().known and ct.key not in hc.view().healthy)
        assert hc.view().detail[ct.key] == "2 failed probes: connection refused"
        (row,) = hc.rows()
        assert row.healthy is False and row.failures >= 2
        with http_server(port, tmp_path, tmp_path / "http2.log"):
            await until(lambda: ct.key in hc.view().healthy)
    states = [ct.key in v.healthy for v in views if ct.key in v.known]
    assert states[:3] == [True, False, True]


async def test_each_target_has_its_own_state() -> None:
    async with backend(200) as (_, up_port), backend(500) as (_, bad_port):
        up, bad = target(up_port, cluster="up", **FAST), target(bad_port, cluster="bad", **FAST)
        hc = HealthChecker([up, bad], lambda v: None, registry=CollectorRegistry())
        async with hc:
            await until(lambda: hc.view().known == {up.key, bad.key})
        assert hc.view().healthy == {up.key}
        assert hc.view().detail[bad.key].endswith("status 500")


async def test_tcp_probe_open_and_closed_port() -> None:
    async with backend() as (_, port):
        ok = await probe(target(port, kind="tcp"))
        assert ok.ok and ok.error is None
    closed = await probe(target(free_port(), kind="tcp"))
    assert not closed.ok and closed.error == "connection refused"


async def test_tcp_probe_over_ipv6_loopback() -> None:
    b = Backend()
    port = await b.start("::1")
    try:
        result = await probe(target(port, address="::1", kind="tcp"))
        assert result.ok
        result = await probe(target(port, address="::1", kind="http"))
        assert result.ok and result.status == 200
        assert b"Host: [::1]:" in b.requests[-1]
    finally:
        await b.stop()


async def test_slow_backend_beyond_timeout_fails() -> None:
    async with backend(200, delay=2.0) as (_, port):
        result = await probe(target(port, timeout=0.2))
    assert not result.ok and result.error == "timeout after 0.2s"


async def test_expected_status_mismatch_fails_and_ranges_match() -> None:
    async with backend(503) as (_, port):
        result = await probe(target(port))
        assert not result.ok and result.error == "status 503" and result.status == 503
        result = await probe(target(port, expected_status=((500, 503),)))
        assert result.ok


async def test_path_and_host_header_are_sent() -> None:
    async with backend() as (b, port):
        result = await probe(target(port, path="/healthz?deep=1", host="app.gtm.example"))
        assert result.ok
    head = b.requests[-1].decode()
    assert head.startswith("GET /healthz?deep=1 HTTP/1.1\r\n")
    assert "\r\nHost: app.gtm.example\r\n" in head
    assert "\r\nConnection: close\r\n" in head


async def test_not_http_is_a_failure() -> None:
    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(banner, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await probe(target(port))
    finally:
        server.close()
        await server.wait_closed()
    assert not result.ok and result.error is not None
    assert result.error.startswith("malformed status line (SSH-2.0")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = require_binary("openssl")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=backend.test",
            "-addext", "subjectAltName=DNS:backend.test,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


async def tls_backend(certificate: tuple[Path, Path], status: int) -> tuple[Backend, int]:
    """A started HTTPS backend answering ``status``, with the self-signed ``certificate``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certificate)
    b = Backend(status)
    return b, await b.start(tls=ctx)


async def test_https_verify_option(certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    b, port = await tls_backend(certificate, 204)
    try:
        unverified = await probe(target(port, kind="https", verify_tls=False))
        assert unverified.ok and unverified.status == 204
        verified = await probe(target(port, kind="https"))
        assert not verified.ok and verified.error is not None
        assert verified.error.startswith("TLS: ") and "self-signed" in verified.error
        trusted = await probe(target(port, kind="https", ca_file=str(cert), host="backend.test"))
        assert trusted.ok
        assert b"Host: backend.test\r\n" in b.requests[-1]
        wrong_name = await probe(target(port, kind="https", ca_file=str(cert), host="other.test"))
        assert not wrong_name.ok and "TLS" in (wrong_name.error or "")
        plain = await probe(target(port, kind="http", timeout=0.5))
        assert not plain.ok
    finally:
        await b.stop()


async def test_https_through_the_checker(certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    b, port = await tls_backend(certificate, 200)
    registry = CollectorRegistry()
    ct = target(port, kind="https", ca_file=str(cert), **FAST)
    try:
        async with HealthChecker([ct], lambda v: None, registry=registry) as hc:
            await until(lambda: ct.key in hc.view().healthy)
    finally:
        await b.stop()
    labels = {
        "cluster": "c1",
        "region": "eu-west",
        "endpoint": f"127.0.0.1:{port}",
        "kind": "https",
        "result": "success",
    }
    assert (registry.get_sample_value("ubiq_gtm_health_probes_total", labels) or 0) >= 2
