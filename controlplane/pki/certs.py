"""Certificates for xDS mTLS and workload identities, built with ``cryptography`` (no crypto of
our own). Pure: keys and certificates in, PEM bytes out; the clock is a parameter.

Identities are SPIFFE IDs in the certificate's URI SAN:

- a CA: ``spiffe://TRUST_DOMAIN`` (names the trust domain its leaves belong to);
- an xDS client (Envoy, proxyless gRPC): ``spiffe://TD/cluster/CLUSTER/node/NODE_ID``;
- Ubiq's xDS server: ``spiffe://TD/ubiq/control-plane`` (plus DNS/IP SANs for hostname checks);
- a workload (a Service's Envoys, SDS): ``spiffe://TD/ns/ubiq/sa/SERVICE``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane.errors import UbiqError

SERVER_PATH = "/ubiq/control-plane"
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]{1,255}$")
_NODE_PATH = re.compile(r"^/cluster/([^/]+)/node/([^/]+)$")
#: backdating of notBefore, so a peer whose clock is a little behind accepts a fresh cert
CLOCK_SKEW = dt.timedelta(minutes=5)


class CertError(UbiqError):
    """A certificate or key that cannot be read or used as asked."""


@dataclass(frozen=True, slots=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def check_trust_domain(trust_domain: str) -> str:
    if not _TRUST_DOMAIN.match(trust_domain):
        raise CertError(
            f"trust domain {trust_domain!r}: expected lowercase letters, digits, '.', '-', '_'"
        )
    return trust_domain


def node_spiffe_id(trust_domain: str, cluster: str, node_id: str) -> str:
    """The SPIFFE ID an xDS client's certificate carries (path segments percent-encoded)."""
    return (
        f"spiffe://{trust_domain}/cluster/{quote(cluster, safe='')}/node/{quote(node_id, safe='')}"
    )


def server_spiffe_id(trust_domain: str) -> str:
    return f"spiffe://{trust_domain}{SERVER_PATH}"


def workload_spiffe_id(trust_domain: str, service: str) -> str:
    return f"spiffe://{trust_domain}/ns/ubiq/sa/{quote(service, safe='')}"


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    trust_domain: str
    cluster: str
    node_id: str


def parse_node_spiffe_id(uri: str) -> NodeIdentity | None:
    """``spiffe://TD/cluster/C/node/N`` -> its parts; None for any other URI."""
    if not uri.startswith("spiffe://"):
        return None
    trust_domain, slash, path = uri[len("spiffe://") :].partition("/")
    match = _NODE_PATH.match(slash + path)
    if not trust_domain or match is None:
        return None
    return NodeIdentity(trust_domain, unquote(match.group(1)), unquote(match.group(2)))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    not_after: dt.datetime,
    *,
    ca: bool,
) -> x509.CertificateBuilder:
    """What a CA and a leaf share: names, the subject's key, serial, validity (from ``now`` less
    the clock skew), basic constraints and key usage (a CA signs certificates and CRLs, a leaf
    signs and agrees keys)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=not ca,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def create_ca(trust_domain: str, *, days: int = 3650, now: dt.datetime | None = None) -> Issued:
    """A self-signed CA (P-256) whose URI SAN names the trust domain."""
    check_trust_domain(trust_domain)
    now = now or _now()
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Ubiq CA {trust_domain}")])
    cert = (
        _builder(name, name, key, now, now + dt.timedelta(days=days), ca=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA that can issue: its certificate and private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes, where: str = "CA") -> Authority:
        cert = check_key_pair(cert_pem, key_pem, where)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertError(f"{where}: key must be an EC key (create one with `ubiq certs ca`)")
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            raise CertError(f"{where}: the certificate is not a CA (basicConstraints ca=false)")
        return cls(cert, key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def trust_domain(self) -> str:
        domains = trust_domains(self.cert)
        if not domains:
            raise CertError("CA: no spiffe://TRUST_DOMAIN URI SAN; create it with `ubiq certs ca`")
        return domains[0]

    def issue(
        self,
        spiffe_id: str,
        *,
        ttl: dt.timedelta,
        server: bool = False,
        client: bool = True,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        now: dt.datetime | None = None,
    ) -> Issued:
        """A leaf for ``spiffe_id`` (P-256), valid ``ttl`` from now, never past the CA's end."""
        now = now or _now()
        key = _key()
        not_after = min(now + ttl, self.cert.not_valid_after_utc)
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id)]
        sans += [x509.DNSName(name) for name in dns_names]
        for address in ip_addresses:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(address)))
            except ValueError:
                raise CertError(f"--ip: expected an IP address, got {address!r}") from None
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spiffe_id[:64])])
        cert = (
            _builder(subject, self.cert.subject, key, now, not_after, ca=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def load_cert(pem: bytes, where: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertError(f"{where}: not a PEM certificate: {exc}") from None


def load_bundle(pem: bytes, where: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertError(f"{where}: not a PEM certificate bundle: {exc}") from None
    return certs


def uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


def trust_domains(cert: x509.Certificate) -> list[str]:
    """Trust domains a CA certificate names (``spiffe://TD`` URI SANs with no path)."""
    out = []
    for uri in uri_sans(cert):
        if uri.startswith("spiffe://"):
            domain, _, path = uri[len("spiffe://") :].partition("/")
            if domain and not path:
                out.append(domain)
    return out


def check_key_pair(cert_pem: bytes, key_pem: bytes, where: str) -> x509.Certificate:
    """The certificate (first of the chain) and the key that belongs to it, or CertError."""
    cert = load_cert(cert_pem, where)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertError(f"{where}: key is not an unencrypted PEM private key: {exc}") from None
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != expected:
        raise CertError(f"{where}: the key does not belong to the certificate")
    return cert
