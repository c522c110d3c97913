"""DNS over TLS (RFC 7858) through ``ubiq serve --dns-tls``, with a CA and server certificate made
by ``ubiq certs`` and real kdig clients: answered with the CA trusted and the name checked,
refused without; counted in /metrics as proto "tls"; a renewed certificate is served to new
connections without a restart; a connection that says nothing is closed by the TCP idle limit."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
from cryptography import x509

from tests.support.dns import dig
from tests.support.poll import wait_until
from tests.support.procs import free_port
from tests.support.ubiq_serve import EU, NAME, serving, write_policy

HOST = "dns.gtm.test"


def certs(workdir: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "certs", *args],
        cwd=workdir, check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def served_serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_dns_over_tls_with_kdig(tmp_path: Path) -> None:
    certs(tmp_path, "ca", "--trust-domain", "gtm.test", "--out", "ca")
    certs(tmp_path, "server", "--dns", HOST, "--ip", "127.0.0.1", "--out", "dot")
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "dot.pem", tmp_path / "dot-key.pem"
    write_policy(tmp_path / "policies")
    port = free_port()
    flags = (
        "--dns-tls",
        f"127.0.0.1:{port}",
        "--dns-tls-cert",
        str(cert),
        "--dns-tls-key",
        str(key),
    )
    with serving(tmp_path / "policies", tmp_path, *flags) as served:
        # strict profile: the CA and the name are checked
        good = dig("127.0.0.1", port, NAME, "A", f"+tls-ca={ca}", f"+tls-hostname={HOST}",
                   binary="kdig")  # fmt: skip
        assert good.status == "NOERROR" and good.rdata("A") == [EU]
        # kdig without SNI (no +tls-hostname): the address is checked against the IP SAN
        assert dig("127.0.0.1", port, NAME, "A", f"+tls-ca={ca}", binary="kdig").rdata("A") == [EU]
        # a CA it does not trust (the system store), or the wrong name: no answer
        assert dig("127.0.0.1", port, NAME, "A", "+tls-ca", f"+tls-hostname={HOST}",
                   binary="kdig").status == "NONE"  # fmt: skip
        assert dig("127.0.0.1", port, NAME, "A", f"+tls-ca={ca}", "+tls-hostname=other.test",
                   binary="kdig").status == "NONE"  # fmt: skip
        # plain DNS over TCP to the TLS port gets nothing; the --dns port still answers plainly
        assert dig("127.0.0.1", port, NAME, "A", "+tcp").status == "NONE"
        assert dig("127.0.0.1", served.dns_port, NAME, "A", "+tcp").rdata("A") == [EU]
        metrics = httpx.get(f"{served.api}/metrics", timeout=5).text
        assert 'ubiq_dns_responses_total{proto="tls",rcode="NOERROR",type="A"} 2.0' in metrics

        # renewal: new connections get the new certificate, no restart
        before = served_serial(port, ca)
        certs(tmp_path, "server", "--dns", HOST, "--ip", "127.0.0.1", "--out", "dot", "--force")
        renewed = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
        assert renewed != before
        wait_until(lambda: served_serial(port, ca) == renewed, 10, "the renewed certificate")
        assert served.proc.poll() is None

        # the TCP idle limit (10 s) holds inside TLS: a silent client is closed
        context = ssl.create_default_context(cafile=str(ca))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            assert tls.recv(1) == b""  # end of stream from the server, within 30 s
