"""LDS: one plain-HTTP listener per node; routes come over RDS on the same ADS stream.

HTTP filters: CORS (acts only where a route carries a CorsPolicy), fault (empty config: it only
acts where a route carries a per-route HTTPFault), then router. With
``CompileOptions.access_log_cluster`` the connection manager also streams its access logs over
gRPC (ALS) for the feedback loop's client-group latency.
"""

from __future__ import annotations

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2 as grpc_als_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from controlplane.xds.compiler.options import CompileOptions, NodeIdentity
from controlplane.xds.compiler.protos import make_ads_source, make_any, make_duration
from controlplane.xds.compiler.routes import CORS_FILTER, FAULT_FILTER

HCM_FILTER = "envoy.filters.network.http_connection_manager"
HTTP_GRPC_ACCESS_LOG = "envoy.access_loggers.http_grpc"
ACCESS_LOG_NAME = "ubiq"
ROUTER_FILTER = "envoy.filters.http.router"


def fault_filter() -> hcm_pb2.HttpFilter:
    """The fault filter with an empty config: it acts only where a route carries an HTTPFault."""
    return hcm_pb2.HttpFilter(name=FAULT_FILTER, typed_config=make_any(fault_pb2.HTTPFault()))


def make_connection_manager(options: CompileOptions) -> hcm_pb2.HttpConnectionManager:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=options.stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        http_filters=[
            hcm_pb2.HttpFilter(name=CORS_FILTER, typed_config=make_any(cors_pb2.Cors())),
            fault_filter(),
            hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=make_any(router_pb2.Router())),
        ],
    )
    hcm.rds.config_source.CopyFrom(make_ads_source())
    hcm.rds.route_config_name = options.route_config_name
    if options.access_log_cluster:
        hcm.access_log.append(make_grpc_access_log(options))
    return hcm


def make_grpc_access_log(options: CompileOptions) -> accesslog_pb2.AccessLog:
    """HTTP access logs streamed over gRPC (ALS) to ``options.access_log_cluster``."""
    common = grpc_als_pb2.CommonGrpcAccessLogConfig(
        log_name=ACCESS_LOG_NAME,
        transport_api_version=config_source_pb2.V3,
        buffer_flush_interval=make_duration(options.access_log_flush_ms),
    )
    common.grpc_service.envoy_grpc.cluster_name = options.access_log_cluster or ""
    common.buffer_size_bytes.value = options.access_log_buffer_bytes
    return accesslog_pb2.AccessLog(
        name=HTTP_GRPC_ACCESS_LOG,
        typed_config=make_any(grpc_als_pb2.HttpGrpcAccessLogConfig(common_config=common)),
    )


def build_listener(node: NodeIdentity, options: CompileOptions) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=options.listener_name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(
                address=options.address_for(node), port_value=options.port_for(node)
            )
        ),
        filter_chains=[
            lc_pb2.FilterChain(
                filters=[
                    lc_pb2.Filter(
                        name=HCM_FILTER, typed_config=make_any(make_connection_manager(options))
                    )
                ]
            )
        ],
    )


def build_listeners(node: NodeIdentity, options: CompileOptions) -> list[listener_pb2.Listener]:
    return [build_listener(node, options)]
