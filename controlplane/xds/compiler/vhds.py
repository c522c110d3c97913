"""VHDS for Envoy groups (``CompileOptions.vhds_cluster``): the RouteConfiguration carries no
virtual hosts, only a ``vhds`` config source, and each virtual host is its own resource.

Envoy (1.40) takes VHDS over Delta xDS only: ``api_config_source.api_type: DELTA_GRPC`` (a
stream of its own, ``VirtualHostDiscoveryService/DeltaVirtualHosts``, to the bootstrap's xDS
cluster) works whatever the Envoy's ADS stream speaks, SotW or Delta. Envoy subscribes to the
route configuration's name as a namespace and takes every ``<name>/<host>`` resource the server
sends, so every host is pushed up front and no on-demand filter is needed (docs/xds.md, "VHDS").
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType

from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from controlplane.xds.compiler.options import CompileOptions, NodeIdentity
from controlplane.xds.node import DEFAULT_ROLE


def uses_vhds(options: CompileOptions, node: NodeIdentity) -> bool:
    """Envoys (not proxyless gRPC clients, which have no VHDS) when the option is on."""
    return bool(options.vhds_cluster) and node.role == DEFAULT_ROLE


def vhds_config_source(cluster: str) -> config_source_pb2.ConfigSource:
    """Delta gRPC to ``cluster``, every field Envoy would default written out."""
    api = config_source_pb2.ApiConfigSource(
        api_type=config_source_pb2.ApiConfigSource.DELTA_GRPC,
        transport_api_version=config_source_pb2.V3,
        grpc_services=[
            grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster)
            )
        ],
        set_node_on_first_message_only=True,
    )
    return config_source_pb2.ConfigSource(
        api_config_source=api, resource_api_version=config_source_pb2.V3
    )


@functools.lru_cache(maxsize=64)
def vhds_route_configuration(name: str, cluster: str) -> Mapping[str, Message]:
    """``{name: RouteConfiguration(name, vhds)}``; the same (read-only) object for the same
    arguments, so a snapshot built after any change reuses its Entry."""
    config = route_pb2.RouteConfiguration(
        name=name, vhds=route_pb2.Vhds(config_source=vhds_config_source(cluster))
    )
    return MappingProxyType({name: config})
