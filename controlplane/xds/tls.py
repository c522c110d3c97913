"""TLS for the xDS server: gRPC credentials that require a client certificate and re-read the
certificate, key and client CA files when they change, so rotation needs no restart and drops
no stream (established connections keep their session; new handshakes get the new files).

gRPC calls ``fetch`` before each handshake; it looks at the files' ``stat`` and reads them only
when one changed. A new set that does not load (half-written file, key not matching the
certificate) is logged once and the last good set keeps serving.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog

from controlplane.pki.certs import CertError, check_key_pair, load_bundle, trust_domains
from controlplane.pki.stamps import Stamp, file_stamps

log = structlog.get_logger(__name__)

MAX_PEM_BYTES = 1024 * 1024  # one certificate, key or CA bundle file


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path


@dataclass(frozen=True, slots=True)
class _Loaded:
    cert: bytes
    key: bytes
    client_ca: bytes
    trust_domains: frozenset[str]


def _read(path: Path, flag: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_PEM_BYTES:
            raise CertError(f"{flag} {path}: {size} bytes; the limit is {MAX_PEM_BYTES}")
        return path.read_bytes()
    except OSError as exc:
        raise CertError(f"{flag} {path}: {exc.strerror or exc}") from None


def load_files(files: TlsFiles) -> _Loaded:
    """Read and check the three files; CertError names the flag and file that is wrong."""
    cert = _read(files.cert, "--xds-tls-cert")
    key = _read(files.key, "--xds-tls-key")
    client_ca = _read(files.client_ca, "--xds-tls-client-ca")
    check_key_pair(cert, key, f"--xds-tls-cert {files.cert} / --xds-tls-key {files.key}")
    roots = load_bundle(client_ca, f"--xds-tls-client-ca {files.client_ca}")
    domains = frozenset(d for root in roots for d in trust_domains(root))
    return _Loaded(cert, key, client_ca, domains)


def _stamp(files: TlsFiles) -> Stamp:
    return file_stamps(files.cert, files.key, files.client_ca)


def _configuration(loaded: _Loaded) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(loaded.key, loaded.cert)], root_certificates=loaded.client_ca
    )


class ReloadingTls:
    """The server's TLS material, re-read from its files when they change."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._stamp = _stamp(files)
        self._loaded = load_files(files)  # raises: a server with bad files does not start
        self._failed_stamp: tuple[tuple[int, int, int], ...] | None = None
        self.reloads = 0

    @property
    def trust_domains(self) -> frozenset[str]:
        """Trust domains the client CA bundle names (``spiffe://TD`` URI SANs)."""
        return self._loaded.trust_domains

    def credentials(self) -> grpc.ServerCredentials:
        # grpc-stubs types the fetcher without Optional; gRPC documents None as "no change"
        return grpc.dynamic_ssl_server_credentials(
            _configuration(self._loaded),
            self.fetch,  # type: ignore[arg-type]
            require_client_authentication=True,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's certificate_configuration_fetcher: a new configuration, or None for no change."""
        stamp = _stamp(self.files)
        with self._lock:
            if stamp == self._stamp or stamp == self._failed_stamp:
                return None
            try:
                loaded = load_files(self.files)
            except CertError as exc:
                self._failed_stamp = stamp
                log.warning("xds.tls.reload_failed", error=str(exc), keeping="the last good files")
                return None
            self._stamp, self._loaded, self._failed_stamp = stamp, loaded, None
            self.reloads += 1
        log.info("xds.tls.reloaded", cert=str(self.files.cert), client_ca=str(self.files.client_ca))
        return _configuration(loaded)
