"""Workload mTLS between clusters (TrafficPolicy ``tls: {mode: ISTIO_MUTUAL}``): pure builders.

For a service in mutual mode, a node's Envoy reaches the service's endpoints in *other* clusters
only through each remote cluster's east-west gateway (``Cluster.spec.gateway.address`` and
``mtlsPort``), over mTLS:

- EDS: a remote cluster's endpoints become one endpoint, its gateway, weighted by their total
  weight and marked ``envoy.transport_socket_match: {ubiq.tls: mutual}``; a remote cluster whose
  gateway has no ``mtlsPort`` gets no endpoints (never plaintext). Endpoints in the node's own
  cluster stay direct, in plaintext.
- CDS: the service's clusters get a transport socket match: an ``UpstreamTlsContext`` with the
  node's gateway identity (SDS secret ``ubiq-gateway-identity``), SNI naming the cluster, and
  the server's SAN checked against the service's SPIFFE ID with the workload CA (SDS
  ``ubiq-workload-ca``).
- LDS: where the node's cluster has a gateway ``mtlsPort``, a listener ``ubiq-east-west`` on it:
  one filter chain per mutual service cluster with endpoints here, chosen by SNI, requiring a
  client certificate from the workload CA (SDS), presenting the service's certificate (SDS
  ``ubiq-workload|SERVICE``), and TCP-proxying to ``inbound|CLUSTER`` (a STATIC cluster of the
  local endpoints only).

Secrets (the SDS resources) are made by ``controlplane/xds/workload_certs.py``; this module
only names them (``workload_secret_names``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from controlplane.policy.model import Model
from controlplane.policy.service import ServiceSpec
from controlplane.policy.traffic import TrafficPolicySpec
from controlplane.xds.compiler.effective import ModelIndex
from controlplane.xds.compiler.options import CompileOptions, NodeIdentity
from controlplane.xds.compiler.protos import make_ads_source, make_any, make_duration

WORKLOAD_CA = "ubiq-workload-ca"
GATEWAY_IDENTITY = "ubiq-gateway-identity"
EAST_WEST_LISTENER = "ubiq-east-west"
MATCH_FILTER = "envoy.transport_socket_match"
MATCH_KEY = "ubiq.tls"
MATCH_VALUE = "mutual"
TLS_SOCKET = "envoy.transport_sockets.tls"


def is_mutual(traffic: TrafficPolicySpec | None) -> bool:
    return traffic is not None and traffic.tls is not None and traffic.tls.mode == "ISTIO_MUTUAL"


def service_secret(service: str) -> str:
    return f"ubiq-workload|{service}"


def gateway_spiffe_id(trust_domain: str, cluster: str) -> str:
    """The identity a cluster's gateway presents when it calls another cluster's gateway."""
    return f"spiffe://{trust_domain}/cluster/{cluster}/gateway"


def sni(service: str, subset: str | None, port: int) -> str:
    """Istio's outbound SNI shape: ``outbound_.PORT_.SUBSET_.SERVICE.ubiq``."""
    return f"outbound_.{port}_.{subset or ''}_.{service}.ubiq"


def inbound_name(cluster_name: str) -> str:
    return f"inbound|{cluster_name}"


def gateways(model: Model) -> dict[str, tuple[str, int]]:
    """Ubiq cluster -> (address, mtlsPort) of its east-west gateway, for those that have one."""
    out = {}
    for name, cluster in model.clusters.items():
        gw = cluster.spec.gateway
        if gw is not None and gw.mtls_port is not None:
            out[name] = (gw.address, gw.mtls_port)
    return out


def _sds(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=make_ads_source())


def _validation(matcher: string_pb2.StringMatcher) -> tls_pb2.CommonTlsContext:
    context = tls_pb2.CommonTlsContext()
    combined = context.combined_validation_context
    combined.default_validation_context.match_typed_subject_alt_names.append(
        common_pb2.SubjectAltNameMatcher(
            san_type=common_pb2.SubjectAltNameMatcher.URI, matcher=matcher
        )
    )
    combined.validation_context_sds_secret_config.CopyFrom(_sds(WORKLOAD_CA))
    return context


def upstream_socket_match(
    service: str, server_name: str, trust_domain: str
) -> cluster_pb2.Cluster.TransportSocketMatch:
    from controlplane.pki.certs import workload_spiffe_id  # cryptography: only with mutual TLS

    context = _validation(string_pb2.StringMatcher(exact=workload_spiffe_id(trust_domain, service)))
    context.tls_certificate_sds_secret_configs.append(_sds(GATEWAY_IDENTITY))
    upstream = tls_pb2.UpstreamTlsContext(sni=server_name, common_tls_context=context)
    match = struct_pb2.Struct()
    match.update({MATCH_KEY: MATCH_VALUE})
    return cluster_pb2.Cluster.TransportSocketMatch(
        name="ubiq-mtls",
        match=match,
        transport_socket=base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=make_any(upstream)),
    )


def gateway_endpoint(address: str, port: int, weight: int) -> ec_pb2.LbEndpoint:
    endpoint = ec_pb2.LbEndpoint(
        endpoint=ec_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=address, port_value=port)
            )
        ),
        load_balancing_weight=wrappers_pb2.UInt32Value(value=max(1, weight)),
    )
    endpoint.metadata.filter_metadata[MATCH_FILTER].update({MATCH_KEY: MATCH_VALUE})
    return endpoint


def _local_targets(
    index: ModelIndex, node: NodeIdentity
) -> Iterator[tuple[str, str, str | None, int, ServiceSpec]]:
    """(service, cluster name, subset, port, spec) of mutual clusters with endpoints here."""
    from controlplane.xds.compiler.clusters import cluster_targets

    for name in sorted(index.model.services):
        spec = index.model.services[name].spec
        for cname, port, subset in cluster_targets(name, spec):
            if not is_mutual(index.traffic(name, subset)):
                continue
            chosen = spec.subset(subset) if subset is not None else None
            labels = chosen.labels if chosen is not None else {}
            if any(
                ep.cluster == node.cluster and all(ep.labels.get(k) == v for k, v in labels.items())
                for ep in spec.endpoints
            ):
                yield name, cname, subset, port.port, spec


def build_east_west_listener(
    model: Model, node: NodeIdentity, options: CompileOptions
) -> listener_pb2.Listener | None:
    gateway = gateways(model).get(node.cluster)
    if gateway is None or not options.workload_trust_domain:
        return None
    targets = list(_local_targets(ModelIndex(model), node))
    if not targets:
        return None
    listener = listener_pb2.Listener(
        name=EAST_WEST_LISTENER,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(
                address=options.address_for(node), port_value=gateway[1]
            )
        ),
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.tls_inspector",
                typed_config=make_any(tls_inspector_pb2.TlsInspector()),
            )
        ],
        listener_filters_timeout=make_duration(options.connect_timeout_ms * 5),
    )
    prefix = string_pb2.StringMatcher(prefix=f"spiffe://{options.workload_trust_domain}/")
    for service, cname, subset, port, _ in targets:
        context = _validation(prefix)
        context.tls_certificate_sds_secret_configs.append(_sds(service_secret(service)))
        downstream = tls_pb2.DownstreamTlsContext(
            common_tls_context=context,
            require_client_certificate=wrappers_pb2.BoolValue(value=True),
        )
        chain = listener.filter_chains.add(name=cname)
        chain.filter_chain_match.server_names.append(sni(service, subset, port))
        chain.transport_socket.CopyFrom(
            base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=make_any(downstream))
        )
        proxy = tcp_proxy_pb2.TcpProxy(
            stat_prefix=f"ubiq_east_west_{cname}", cluster=inbound_name(cname)
        )
        chain.filters.add(name="envoy.filters.network.tcp_proxy", typed_config=make_any(proxy))
    return listener


def build_inbound_cluster(
    cluster_name: str, endpoints: list[tuple[str, int, int]], options: CompileOptions
) -> cluster_pb2.Cluster:
    """STATIC cluster of the local endpoints ``(address, port, weight)`` behind the gateway."""
    name = inbound_name(cluster_name)
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STATIC)
    c.connect_timeout.CopyFrom(make_duration(options.connect_timeout_ms))
    c.load_assignment.cluster_name = name
    group = c.load_assignment.endpoints.add()
    for address, port, weight in endpoints:
        group.lb_endpoints.append(
            ec_pb2.LbEndpoint(
                endpoint=ec_pb2.Endpoint(
                    address=address_pb2.Address(
                        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
                    )
                ),
                load_balancing_weight=wrappers_pb2.UInt32Value(value=weight),
            )
        )
    return c


def workload_secret_names(model: Model, node: NodeIdentity, options: CompileOptions) -> list[str]:
    """The SDS secrets a node's resources reference (none when no service is mutual)."""
    if not options.workload_trust_domain:
        return []  # first: the scan below visits every service and subset (~0.1 s at 10k)
    index = ModelIndex(model)
    mutual = any(
        is_mutual(index.traffic(name, s))
        for name, svc in model.services.items()
        for s in (None, *(x.name for x in svc.spec.subsets))
    )
    if not mutual:
        return []
    names = {WORKLOAD_CA, GATEWAY_IDENTITY}
    if node.cluster in gateways(model):
        names.update(service_secret(t[0]) for t in _local_targets(index, node))
    return sorted(names)


def secret_services(names: Mapping[str, object] | list[str]) -> list[str]:
    """Services named by ``ubiq-workload|SERVICE`` secret names."""
    prefix = service_secret("")
    return sorted(n[len(prefix) :] for n in names if n.startswith(prefix))
