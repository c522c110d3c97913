"""Envoy v3 resources built by hand with xds-protos: listener -> RDS route -> EDS cluster."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE

ROUTE_HEADER = "x-ubiq-route"


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def _packed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _address(host: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=host, port_value=port)
    )


def make_listener(
    name: str, port: int, route_name: str, host: str = "127.0.0.1"
) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(config_source=_ads(), route_config_name=route_name),
        http_filters=[
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.router", typed_config=_packed(router_pb2.Router())
            )
        ],
    )
    return listener_pb2.Listener(
        name=name,
        address=_address(host, port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=_packed(hcm),
                    )
                ]
            )
        ],
    )


def make_route(
    name: str, cluster: str, tag: str, regex: str | None = None
) -> route_pb2.RouteConfiguration:
    """A route config sending everything to ``cluster``, stamping ``tag`` on responses."""
    match = route_components_pb2.RouteMatch(prefix="/")
    if regex is not None:
        match = route_components_pb2.RouteMatch()
        match.safe_regex.regex = regex
    header = base_pb2.HeaderValueOption()
    header.header.key = ROUTE_HEADER
    header.header.value = tag
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="all",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=match,
                        route=route_components_pb2.RouteAction(cluster=cluster),
                        response_headers_to_add=[header],
                    )
                ],
            )
        ],
    )


def make_cluster(name: str) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads()),
        connect_timeout=duration_pb2.Duration(seconds=1),
    )


def make_cla(
    name: str, ports: list[int], host: str = "127.0.0.1"
) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(address=_address(host, port))
                    )
                    for port in ports
                ]
            )
        ],
    )


def make_resources(
    listener_port: int,
    backends: dict[str, list[int]],
    route_to: str,
    tag: str = "v1",
    regex: str | None = None,
) -> dict[str, dict[str, Message]]:
    """One listener -> route ``main`` -> cluster ``route_to``; one EDS cluster per backend."""
    return {
        LISTENER: {"http": make_listener("http", listener_port, "main")},
        ROUTE: {"main": make_route("main", route_to, tag, regex)},
        CLUSTER: {name: make_cluster(name) for name in backends},
        ENDPOINT: {name: make_cla(name, ports) for name, ports in backends.items()},
    }


def make_fleet(clusters: int, port: int = 10000) -> dict[str, dict[str, Message]]:
    """A snapshot of ``clusters`` EDS clusters with three endpoints each (benchmarks)."""
    backends = {f"svc-{i:04d}": [port + i, port + i + 1, port + i + 2] for i in range(clusters)}
    return make_resources(port - 1, backends, route_to="svc-0000")
