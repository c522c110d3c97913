"""Who the resources are for (NodeIdentity), how they are shaped (CompileOptions), and names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from controlplane.xds.node import DEFAULT_ROLE


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """An Envoy as the compiler sees it: the Ubiq cluster it runs in and where that is."""

    cluster: str
    region: str
    zone: str = ""
    role: str = DEFAULT_ROLE


@dataclass(frozen=True, slots=True)
class CompileOptions:
    listener_port: int = 10000
    #: per Ubiq cluster overrides of ``listener_port`` (several Envoys on one test machine)
    listener_ports: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    listener_address: str = "0.0.0.0"
    #: per Ubiq cluster overrides of ``listener_address`` (e.g. each cluster's gateway address)
    listener_addresses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    listener_name: str = "ubiq-http"
    route_config_name: str = "ubiq-http"
    connect_timeout_ms: int = 1000
    stat_prefix: str = "ubiq_http"
    #: Envoy cluster (in the bootstrap) of a gRPC Access Log Service to stream HTTP access logs
    #: to (``ubiq_xds``: Ubiq's own server, see controlplane/feedback/access_logs.py); None: off
    access_log_cluster: str | None = None
    access_log_flush_ms: int = 1000  # Envoy batches entries at most this long
    access_log_buffer_bytes: int = 16384  # ... or until this many bytes
    #: SPIFFE trust domain of the workload CA (``serve --workload-ca-cert``); "" (none): services
    #: with ``tls: {mode: ISTIO_MUTUAL}`` get no endpoints in other clusters (fail closed)
    workload_trust_domain: str = ""
    #: Envoy cluster (in the bootstrap: ``ubiq_xds``) to fetch virtual hosts from over VHDS;
    #: None (default): each Envoy's RouteConfiguration carries every virtual host (RDS only).
    #: Proxyless gRPC groups always get whole RouteConfigurations.
    vhds_cluster: str | None = None

    def port_for(self, node: NodeIdentity) -> int:
        return self.listener_ports.get(node.cluster, self.listener_port)

    def address_for(self, node: NodeIdentity) -> str:
        return self.listener_addresses.get(node.cluster, self.listener_address)


SEPARATOR = "|"


def cluster_name(service: str, subset: str | None = None, port: int | None = None) -> str:
    """``checkout``, ``checkout|v1``; a port other than the service's first: ``checkout||9090``."""
    if port is None:
        return f"{service}{SEPARATOR}{subset}" if subset else service
    return f"{service}{SEPARATOR}{subset or ''}{SEPARATOR}{port}"
