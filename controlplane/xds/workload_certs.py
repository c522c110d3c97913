"""Short-lived workload certificates, issued from the CA Ubiq is given and served over SDS.

For each node group (one Ubiq cluster) the compiler names the secrets its resources reference
(``mtls.workload_secret_names``); ``WorkloadCerts.secrets`` returns them as Envoy ``Secret``
messages: the CA (validation context), the cluster gateway's client identity and one server
certificate per mutual service with endpoints there. A certificate is re-issued once
``renew_fraction`` of its lifetime has passed, so Envoy always holds one with time left; the
runtime asks again at ``next_refresh()`` and pushes what changed. An unchanged secret is the same
message object, so snapshots reuse its bytes and its version.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from controlplane.pki.certs import Authority, workload_spiffe_id
from controlplane.xds.compiler.mtls import (
    GATEWAY_IDENTITY,
    WORKLOAD_CA,
    gateway_spiffe_id,
    secret_services,
)

DEFAULT_TTL = dt.timedelta(hours=1)
MIN_TTL = dt.timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class _Held:
    secret: secret_pb2.Secret
    refresh_at: float


class WorkloadCerts:
    def __init__(
        self,
        authority: Authority,
        *,
        ttl: dt.timedelta = DEFAULT_TTL,
        renew_fraction: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl < MIN_TTL:
            raise ValueError(f"workload certificate TTL must be at least {MIN_TTL}, got {ttl}")
        self.authority = authority
        self.trust_domain = authority.trust_domain
        self.ttl = ttl
        self.renew_fraction = renew_fraction
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], _Held] = {}  # (cluster, secret name) -> secret
        self.issued = 0  # certificates issued so far
        ca = common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=authority.cert_pem)
        )
        self._ca = secret_pb2.Secret(name=WORKLOAD_CA, validation_context=ca)

    def secrets(self, cluster: str, names: Sequence[str]) -> dict[str, secret_pb2.Secret]:
        """The named secrets for a node of ``cluster``, issuing what is missing or due."""
        services = set(secret_services(list(names)))
        now = self._clock()
        out: dict[str, secret_pb2.Secret] = {}
        with self._lock:
            for name in sorted(names):
                if name == WORKLOAD_CA:
                    out[name] = self._ca
                    continue
                held = self._held.get((cluster, name))
                if held is None or now >= held.refresh_at:
                    held = self._issue(cluster, name, services, now)
                    self._held[(cluster, name)] = held
                out[name] = held.secret
            wanted = {(cluster, n) for n in names}
            for key in [k for k in self._held if k[0] == cluster and k not in wanted]:
                del self._held[key]
        return out

    def _issue(self, cluster: str, name: str, services: set[str], now: float) -> _Held:
        if name == GATEWAY_IDENTITY:
            spiffe_id, server = gateway_spiffe_id(self.trust_domain, cluster), False
        else:
            (service,) = [s for s in services if name.endswith(f"|{s}")]
            spiffe_id, server = workload_spiffe_id(self.trust_domain, service), True
        issued = self.authority.issue(
            spiffe_id,
            ttl=self.ttl,
            server=server,
            client=not server,
            now=dt.datetime.fromtimestamp(now, dt.UTC),
        )
        self.issued += 1
        certificate = common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=issued.cert_pem),
            private_key=base_pb2.DataSource(inline_bytes=issued.key_pem),
        )
        secret = secret_pb2.Secret(name=name, tls_certificate=certificate)
        return _Held(secret, now + self.ttl.total_seconds() * self.renew_fraction)

    def current(self, cluster: str, name: str) -> secret_pb2.Secret | None:
        """The secret last issued under ``name`` for ``cluster`` (None: none held)."""
        with self._lock:
            held = self._held.get((cluster, name))
        return held.secret if held is not None else None

    def next_refresh(self) -> float | None:
        """When the first held certificate is due for re-issue (None: none held)."""
        with self._lock:
            return min((h.refresh_at for h in self._held.values()), default=None)
