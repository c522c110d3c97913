"""A CA and certificates for tests, written to files the way `ubiq certs` writes them."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from controlplane.pki.certs import Authority, create_ca, node_spiffe_id, server_spiffe_id
from controlplane.xds.bootstrap import XdsClientTls, render_client_sds
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

    def envoy_tls(self, cluster: str, node_id: str, *, sds: bool = False) -> XdsClientTls:
        """The bootstrap's TLS part for a node; ``sds``: the certificate through file-based SDS
        (the SDS file is written next to it), so a renamed-in new one is picked up live."""
        pair = self.node(cluster, node_id)
        tls = XdsClientTls(
            cert=str(pair.cert),
            key=str(pair.key),
            ca=str(self.ca),
            server_id=server_spiffe_id(self.td),
        )
        if not sds:
            return tls
        sds_file = self.directory / f"sds-{cluster}-{node_id}.json"
        tls = XdsClientTls(tls.cert, tls.key, tls.ca, tls.server_id, sds_file=str(sds_file))
        sds_file.write_text(render_client_sds(tls))
        return tls

    def renew_node(self, cluster: str, node_id: str) -> x509.Certificate:
        """A new certificate and key for the node, each written to a temporary name and renamed
        over the old file (as `ubiq certs node --force` does); returns the new certificate."""
        issued = self.authority.issue(node_spiffe_id(self.td, cluster, node_id), ttl=DAY)
        stem = self.directory / f"node-{cluster}-{node_id}"
        for path, data in (
            (Path(f"{stem}-key.pem"), issued.key_pem),
            (Path(f"{stem}.pem"), issued.cert_pem),
        ):
            temp = path.with_name(f".{path.name}.tmp")
            temp.write_bytes(data)
            os.replace(temp, path)
        return x509.load_pem_x509_certificate(issued.cert_pem)
