"""A CA and certificates for tests, written to files the way `ubiq certs` writes them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from controlplane.pki.certs import Authority, create_ca, node_spiffe_id, server_spiffe_id
from controlplane.xds.bootstrap import XdsClientTls
from controlplane.xds.tls import TlsFiles

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    @property
    def key_pem(self) -> bytes:
        return self.key.read_bytes()


class TestPki:
    """One CA (trust domain ``td``) in ``directory``; issues server and node certificates."""

    __test__ = False

    def __init__(self, directory: Path, td: str = "ubiq.test") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.td = td
        issued = create_ca(td)
        self.ca = directory / "ca.pem"
        self.ca.write_bytes(issued.cert_pem)
        self.authority = Authority.load(issued.cert_pem, issued.key_pem)

    def _write(self, name: str, cert: bytes, key: bytes) -> Pair:
        pair = Pair(self.directory / f"{name}.pem", self.directory / f"{name}-key.pem")
        pair.cert.write_bytes(cert)
        pair.key.write_bytes(key)
        return pair

    def server(self, name: str = "server") -> Pair:
        issued = self.authority.issue(
            server_spiffe_id(self.td),
            ttl=DAY,
            server=True,
            client=False,
            dns_names=["localhost"],
            ip_addresses=["127.0.0.1"],
        )
        return self._write(name, issued.cert_pem, issued.key_pem)

    def node(self, cluster: str, node_id: str) -> Pair:
        issued = self.authority.issue(node_spiffe_id(self.td, cluster, node_id), ttl=DAY)
        return self._write(f"node-{cluster}-{node_id}", issued.cert_pem, issued.key_pem)

    def server_files(self, pair: Pair | None = None) -> TlsFiles:
        pair = pair or self.server()
        return TlsFiles(cert=pair.cert, key=pair.key, client_ca=self.ca)

    def envoy_tls(self, cluster: str, node_id: str) -> XdsClientTls:
        pair = self.node(cluster, node_id)
        return XdsClientTls(
            cert=str(pair.cert),
            key=str(pair.key),
            ca=str(self.ca),
            server_id=server_spiffe_id(self.td),
        )
