"""LDS for proxyless gRPC clients: one API listener per host that routes to a gRPC service.

A gRPC client with target ``xds:///NAME`` asks LDS for the Listener named exactly ``NAME`` and
expects an ``api_listener`` holding an HttpConnectionManager, not a socket. Ours reads the
same RouteConfiguration as the gateway listener over RDS (the client picks the virtual host
whose domains match ``NAME``). Its HTTP filters are the fault filter (gRFC A33: a route's
``fault`` delays or aborts calls in the client itself) and the router, which gRPC requires last.
No CORS filter: gRPC would refuse the listener for a filter it does not implement.

Envoy rejects API listeners sent over LDS: give these only to proxyless groups (e.g. node
metadata ``ubiq.role: grpc``), never to Envoys.
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from controlplane.policy.model import Model
from controlplane.xds.compiler.listeners import ROUTER_FILTER, build_listeners, fault_filter
from controlplane.xds.compiler.options import CompileOptions, NodeIdentity
from controlplane.xds.compiler.protos import make_ads_source, make_any
from controlplane.xds.node import PROXYLESS_ROLE

GRPC_PROTOCOLS = frozenset({"GRPC"})


def grpc_hosts(model: Model) -> list[str]:
    """Hosts of RoutePolicies with a rule routing to a GRPC port, sorted; ``*`` is no name."""
    hosts: set[str] = set()
    for policy in model.route_policies.values():
        for rule in policy.spec.http:
            for dest in rule.route:
                service = model.services.get(dest.service)
                if service is None:
                    continue
                ports = service.spec.ports
                port = next((p for p in ports if p.port == dest.port), ports[0])
                if port.protocol in GRPC_PROTOCOLS:
                    hosts.update(h.rstrip(".") for h in policy.spec.hosts if h != "*")
    return sorted(hosts)


def make_api_connection_manager(options: CompileOptions) -> hcm_pb2.HttpConnectionManager:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=options.stat_prefix,
        http_filters=[
            fault_filter(),
            hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=make_any(router_pb2.Router())),
        ],
    )
    hcm.rds.config_source.CopyFrom(make_ads_source())
    hcm.rds.route_config_name = options.route_config_name
    return hcm


def build_api_listener(host: str, options: CompileOptions) -> listener_pb2.Listener:
    listener = listener_pb2.Listener(name=host)
    listener.api_listener.api_listener.CopyFrom(make_any(make_api_connection_manager(options)))
    return listener


def build_api_listeners(model: Model, options: CompileOptions) -> list[listener_pb2.Listener]:
    return [build_api_listener(host, options) for host in grpc_hosts(model)]


def build_node_listeners(
    model: Model, node: NodeIdentity, options: CompileOptions
) -> list[listener_pb2.Listener]:
    """What LDS gives a node: API listeners for proxyless gRPC clients, a socket for Envoys."""
    if node.role == PROXYLESS_ROLE:
        return build_api_listeners(model, options)
    from controlplane.xds.compiler.mtls import build_east_west_listener

    east_west = build_east_west_listener(model, node, options)
    listeners = build_listeners(node, options)
    return listeners if east_west is None else sorted([*listeners, east_west], key=lambda x: x.name)
