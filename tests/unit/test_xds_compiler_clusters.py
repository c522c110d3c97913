"""Service + TrafficPolicy -> Cluster: names, pools, ejection, balancing, protocols, health checks."""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2
from envoy.type.v3 import percent_pb2, range_pb2
from google.protobuf import wrappers_pb2

from controlplane.xds.compiler.clusters import HTTP_PROTOCOL_OPTIONS
from controlplane.xds.compiler.options import cluster_name
from controlplane.xds.resources import CLUSTER, ENDPOINT
from tests.support.xds_expected import (
    cluster_of,
    compile_all,
    doc,
    duration,
    eds_cluster,
    model,
    u32,
)


def test_one_cluster_per_service_and_subset_each_with_an_assignment() -> None:
    out = compile_all(model())
    assert list(out[CLUSTER]) == ["web", "web|v1", "web|v2"]
    assert list(out[ENDPOINT]) == ["web", "web|v1", "web|v2"]
    assert out[CLUSTER]["web|v1"] == eds_cluster("web|v1")


def test_cluster_names() -> None:
    assert cluster_name("checkout") == "checkout"
    assert cluster_name("checkout", "v1") == "checkout|v1"
    assert cluster_name("checkout", None, 9090) == "checkout||9090"
    assert cluster_name("checkout", "v1", 9090) == "checkout|v1|9090"


def test_traffic_policy_fields() -> None:
    traffic = doc(
        "TrafficPolicy",
        "web",
        """
        service: web
        connectTimeout: 250ms
        connectionPool: {maxConnections: 10, maxPendingRequests: 5, maxRequests: 20, maxRetries: 2}
        outlierDetection: {consecutive5xxErrors: 3, consecutiveGatewayErrors: 2, interval: 2s,
                           baseEjectionTime: 15s, maxEjectionPercent: 40, minHealthPercent: 25}
        loadBalancer: {algorithm: RING_HASH, hashKey: {header: x-user}, minimumRingSize: 2048}
        """,
    )
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        priority=base_pb2.DEFAULT,
        max_connections=u32(10),
        max_pending_requests=u32(5),
        max_requests=u32(20),
        max_retries=u32(2),
    )
    expected = eds_cluster(
        "web",
        250,
        circuit_breakers=circuit_breaker_pb2.CircuitBreakers(thresholds=[thresholds]),
        outlier_detection=outlier_detection_pb2.OutlierDetection(
            consecutive_5xx=u32(3),
            enforcing_consecutive_5xx=u32(100),
            consecutive_gateway_failure=u32(2),
            enforcing_consecutive_gateway_failure=u32(100),
            enforcing_success_rate=u32(0),
            enforcing_failure_percentage=u32(0),
            failure_percentage_threshold=u32(85),
            failure_percentage_minimum_hosts=u32(5),
            failure_percentage_request_volume=u32(50),
            enforcing_consecutive_local_origin_failure=u32(0),
            enforcing_local_origin_success_rate=u32(0),
            enforcing_failure_percentage_local_origin=u32(0),
            interval=duration(2000),
            base_ejection_time=duration(15000),
            max_ejection_time=duration(300_000),
            max_ejection_percent=u32(40),
            always_eject_one_host=wrappers_pb2.BoolValue(value=True),
        ),
        common_lb_config=cluster_pb2.Cluster.CommonLbConfig(
            healthy_panic_threshold=percent_pb2.Percent(value=25)
        ),
        lb_policy=cluster_pb2.Cluster.RING_HASH,
    )
    expected.ring_hash_lb_config.minimum_ring_size.value = 2048
    assert cluster_of(model(traffic), "web") == expected


def test_subset_policy_overrides_service_policy_field_by_field() -> None:
    m = model(
        doc(
            "TrafficPolicy",
            "web",
            "service: web\nconnectTimeout: 2s\nloadBalancer: {algorithm: RANDOM}",
        ),
        doc(
            "TrafficPolicy",
            "web-v2",
            "service: web\nsubset: v2\nloadBalancer: {algorithm: LEAST_REQUEST}",
        ),
    )
    v1, v2 = cluster_of(m, "web|v1"), cluster_of(m, "web|v2")
    assert (v1.lb_policy, v1.connect_timeout) == (cluster_pb2.Cluster.RANDOM, duration(2000))
    assert (v2.lb_policy, v2.connect_timeout) == (cluster_pb2.Cluster.LEAST_REQUEST, duration(2000))


def test_grpc_and_http2_upstreams_and_extra_ports() -> None:
    svc = doc(
        "Service",
        "pay",
        """
        ports: [{name: grpc, port: 9090, protocol: GRPC}, {name: http, port: 8080, protocol: HTTP}]
        endpoints: [{cluster: eu-west, address: 10.0.9.1}]
        """,
    )
    pool = doc(
        "TrafficPolicy", "pay", "service: pay\nconnectionPool: {maxRequestsPerConnection: 7}"
    )
    out = compile_all(model(svc, pool))[CLUSTER]
    assert {"pay", "pay||8080"} <= set(out)
    options = hpo_pb2.HttpProtocolOptions()
    assert out["pay"].typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options)  # type: ignore[attr-defined]
    assert options.explicit_http_config.HasField("http2_protocol_options")
    assert options.common_http_protocol_options.max_requests_per_connection.value == 7
    http = hpo_pb2.HttpProtocolOptions()
    assert out["pay||8080"].typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(http)  # type: ignore[attr-defined]
    assert http.explicit_http_config.HasField("http_protocol_options")
    plain = compile_all(model())[CLUSTER]["web"]
    assert not plain.typed_extension_protocol_options  # type: ignore[attr-defined]


def test_active_health_checks() -> None:
    svc = doc(
        "Service",
        "hc",
        """
        ports: [{port: 8080}]
        endpoints: [{cluster: eu-west, address: 10.0.9.1}]
        healthCheck: {http: {path: /ready, host: hc.internal, expectedStatuses: [200, 204]},
                      interval: 2s, timeout: 500ms, unhealthyThreshold: 3, healthyThreshold: 2}
        """,
    )
    (check,) = cluster_of(model(svc), "hc").health_checks
    expected = health_check_pb2.HealthCheck(
        timeout=duration(500),
        interval=duration(2000),
        no_traffic_interval=duration(2000),
        unhealthy_threshold=u32(3),
        healthy_threshold=u32(2),
        http_health_check=health_check_pb2.HealthCheck.HttpHealthCheck(
            path="/ready",
            host="hc.internal",
            expected_statuses=[
                range_pb2.Int64Range(start=200, end=201),
                range_pb2.Int64Range(start=204, end=205),
            ],
        ),
    )
    assert check == expected
    tcp = doc(
        "Service",
        "tcp",
        "ports: [{port: 5432}]\nendpoints: [{cluster: eu-west, address: 10.0.9.2}]\nhealthCheck: {tcp: true}",
    )
    (check,) = cluster_of(model(tcp), "tcp").health_checks
    assert check.HasField("tcp_health_check")
