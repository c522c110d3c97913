"""CDS: one EDS cluster per service port and per service port x subset.

Names: ``checkout`` (first port), ``checkout|v1`` (subset), ``checkout||9090`` / ``checkout|v1|9090``
(another port). Every cluster reads its endpoints over ADS under its own name.
"""

from __future__ import annotations

from collections.abc import Iterator

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2, protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2
from envoy.type.v3 import percent_pb2, range_pb2
from google.protobuf import wrappers_pb2

from controlplane.policy.service import HealthCheck, ServicePort, ServiceSpec
from controlplane.policy.traffic import (
    ConnectionPool,
    FailurePercentage,
    OutlierDetection,
    TcpKeepalive,
    TrafficPolicySpec,
)
from controlplane.xds.compiler.options import CompileOptions, cluster_name
from controlplane.xds.compiler.protos import make_ads_source, make_any, make_duration

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

_LB = {
    "ROUND_ROBIN": cluster_pb2.Cluster.ROUND_ROBIN,
    "LEAST_REQUEST": cluster_pb2.Cluster.LEAST_REQUEST,
    "RANDOM": cluster_pb2.Cluster.RANDOM,
    "RING_HASH": cluster_pb2.Cluster.RING_HASH,
    "MAGLEV": cluster_pb2.Cluster.MAGLEV,
}


def _u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def make_circuit_breakers(pool: ConnectionPool) -> circuit_breaker_pb2.CircuitBreakers:
    t = circuit_breaker_pb2.CircuitBreakers.Thresholds(priority=base_pb2.DEFAULT)
    if pool.max_connections is not None:
        t.max_connections.value = pool.max_connections
    if pool.max_pending_requests is not None:
        t.max_pending_requests.value = pool.max_pending_requests
    if pool.max_requests is not None:
        t.max_requests.value = pool.max_requests
    if pool.max_retries is not None:
        t.max_retries.value = pool.max_retries
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[t])


#: Envoy's defaults for what the policy does not expose, written out so none is inherited silently
MAX_EJECTION_TIME_MS = 300_000
FAILURE_PERCENTAGE_DEFAULT = FailurePercentage(threshold=85)


def make_outlier_detection(od: OutlierDetection) -> outlier_detection_pb2.OutlierDetection:
    """Consecutive-error ejection, and failure-percentage ejection when the policy asks for it;
    success-rate ejection is off (no policy field). Every field is written, default or not."""
    failure = od.failure_percentage or FAILURE_PERCENTAGE_DEFAULT
    return outlier_detection_pb2.OutlierDetection(
        interval=make_duration(od.interval),
        base_ejection_time=make_duration(od.base_ejection_time),
        max_ejection_time=make_duration(max(MAX_EJECTION_TIME_MS, od.base_ejection_time)),
        max_ejection_percent=_u32(od.max_ejection_percent),
        always_eject_one_host=wrappers_pb2.BoolValue(value=od.always_eject_one_host),
        consecutive_5xx=_u32(od.consecutive_5xx_errors or 0),
        enforcing_consecutive_5xx=_u32(100 if od.consecutive_5xx_errors else 0),
        consecutive_gateway_failure=_u32(od.consecutive_gateway_errors or 0),
        enforcing_consecutive_gateway_failure=_u32(100 if od.consecutive_gateway_errors else 0),
        enforcing_success_rate=_u32(0),
        failure_percentage_threshold=_u32(failure.threshold),
        failure_percentage_minimum_hosts=_u32(failure.minimum_hosts),
        failure_percentage_request_volume=_u32(failure.request_volume),
        enforcing_failure_percentage=_u32(100 if od.failure_percentage else 0),
        enforcing_consecutive_local_origin_failure=_u32(0),
        enforcing_local_origin_success_rate=_u32(0),
        enforcing_failure_percentage_local_origin=_u32(0),
        split_external_local_origin_errors=False,
    )


def make_health_check(hc: HealthCheck, protocol: str) -> health_check_pb2.HealthCheck:
    """``no_traffic_interval`` = ``interval``: a failover target must be known healthy before use."""
    check = health_check_pb2.HealthCheck(
        timeout=make_duration(hc.timeout),
        interval=make_duration(hc.interval),
        no_traffic_interval=make_duration(hc.interval),
        unhealthy_threshold=_u32(hc.unhealthy_threshold),
        healthy_threshold=_u32(hc.healthy_threshold),
    )
    if hc.http is not None:
        http = check.http_health_check
        http.path = hc.http.path
        if hc.http.host:
            http.host = hc.http.host
        if protocol != "HTTP":
            http.codec_client_type = 1  # HTTP2 (envoy.type.v3.CodecClientType)
        if hc.http.expected_statuses != (200,):
            http.expected_statuses.extend(
                range_pb2.Int64Range(start=s, end=s + 1) for s in sorted(hc.http.expected_statuses)
            )
    else:
        check.tcp_health_check.SetInParent()
    return check


def make_protocol_options(
    protocol: str, pool: ConnectionPool | None
) -> hpo_pb2.HttpProtocolOptions | None:
    per_conn = pool.max_requests_per_connection if pool is not None else None
    idle = pool.idle_timeout if pool is not None else None
    lifetime = pool.max_connection_duration if pool is not None else None
    streams = pool.max_concurrent_streams if pool is not None else None
    if protocol == "HTTP" and per_conn is None and idle is None and lifetime is None:
        return None
    options = hpo_pb2.HttpProtocolOptions()
    if protocol == "HTTP":
        options.explicit_http_config.http_protocol_options.SetInParent()
    else:
        h2 = protocol_pb2.Http2ProtocolOptions()
        if streams is not None:
            h2.max_concurrent_streams.value = streams
        options.explicit_http_config.http2_protocol_options.CopyFrom(h2)
    common = options.common_http_protocol_options
    if per_conn is not None:
        common.max_requests_per_connection.value = per_conn
    if idle is not None:
        common.idle_timeout.CopyFrom(make_duration(idle))
    if lifetime is not None:
        common.max_connection_duration.CopyFrom(make_duration(lifetime))
    return options


def make_tcp_keepalive(keepalive: TcpKeepalive) -> address_pb2.TcpKeepalive:
    """Durations round up to whole seconds (the socket options take seconds)."""
    out = address_pb2.TcpKeepalive()
    if keepalive.probes is not None:
        out.keepalive_probes.value = keepalive.probes
    if keepalive.time is not None:
        out.keepalive_time.value = -(-keepalive.time // 1000)
    if keepalive.interval is not None:
        out.keepalive_interval.value = -(-keepalive.interval // 1000)
    return out


def build_cluster(
    name: str,
    port: ServicePort,
    service: ServiceSpec,
    traffic: TrafficPolicySpec | None,
    options: CompileOptions,
    *,
    locality_weighted: bool = False,
) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.eds_cluster_config.eds_config.CopyFrom(make_ads_source())
    c.eds_cluster_config.service_name = name
    timeout = traffic.connect_timeout if traffic and traffic.connect_timeout else None
    c.connect_timeout.CopyFrom(make_duration(timeout or options.connect_timeout_ms))
    pool = traffic.connection_pool if traffic else None
    upgrade = pool is not None and pool.h2_upgrade_policy == "UPGRADE"
    protocol = "HTTP2" if upgrade and port.protocol == "HTTP" else port.protocol
    if pool is not None:
        c.circuit_breakers.CopyFrom(make_circuit_breakers(pool))
    if traffic is not None and traffic.outlier_detection is not None:
        c.outlier_detection.CopyFrom(make_outlier_detection(traffic.outlier_detection))
        c.common_lb_config.healthy_panic_threshold.CopyFrom(
            percent_pb2.Percent(value=float(traffic.outlier_detection.min_health_percent))
        )
    if pool is not None and pool.tcp_keepalive is not None:
        c.upstream_connection_options.tcp_keepalive.CopyFrom(make_tcp_keepalive(pool.tcp_keepalive))
    lb = traffic.load_balancer if traffic else None
    if lb is not None:
        c.lb_policy = _LB[lb.algorithm]
        if lb.minimum_ring_size is not None:
            c.ring_hash_lb_config.minimum_ring_size.value = lb.minimum_ring_size
        if lb.warmup_duration is not None:
            lb_config = (
                c.round_robin_lb_config
                if lb.algorithm == "ROUND_ROBIN"
                else c.least_request_lb_config
            )
            lb_config.slow_start_config.slow_start_window.CopyFrom(
                make_duration(lb.warmup_duration)
            )
    if locality_weighted:
        c.common_lb_config.locality_weighted_lb_config.SetInParent()
    if service.health_check is not None:
        c.health_checks.append(make_health_check(service.health_check, protocol))
    protocol_options = make_protocol_options(protocol, pool)
    if protocol_options is not None:
        c.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(
            make_any(protocol_options)
        )
    return c


def cluster_targets(
    service_name: str, service: ServiceSpec
) -> Iterator[tuple[str, ServicePort, str | None]]:
    """(cluster name, port, subset) for every cluster a service gets."""
    for i, port in enumerate(service.ports):
        number = None if i == 0 else port.port
        yield cluster_name(service_name, None, number), port, None
        for subset in service.subsets:
            yield cluster_name(service_name, subset.name, number), port, subset.name
