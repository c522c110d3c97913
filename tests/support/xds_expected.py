"""Policy sets for the compiler's unit tests and the Envoy protos we expect from them, in one place."""

from __future__ import annotations

import textwrap
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from google.protobuf import duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from controlplane.policy.loader import load_texts
from controlplane.policy.model import Model
from controlplane.xds.compiler import CompileOptions, NodeIdentity, compile_node_resources
from controlplane.xds.resources import CLUSTER, ENDPOINT, ROUTE
from tests.support.policy import cluster, doc, join

CLUSTERS = join(
    cluster("eu-west", "eu-west-1a"),
    cluster("eu-west-2", "eu-west-1b", region="eu-west"),
    cluster("us-west", "us-west-1a"),
    cluster("ap-south", "ap-south-1a"),
)

WEB = doc(
    "Service",
    "web",
    """
    ports: [{port: 8080}]
    subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
    endpoints:
    - {cluster: eu-west, address: 10.0.0.1, labels: {version: v1}}
    - {cluster: eu-west-2, address: 10.0.0.2, labels: {version: v2}}
    - {cluster: us-west, address: 10.0.1.1, port: 9000, labels: {version: v1}}
    - {cluster: ap-south, address: 10.0.2.1, labels: {version: v2}, weight: 3}
    """,
)

EU = NodeIdentity("eu-west", "eu-west", "eu-west-1a")
US = NodeIdentity("us-west", "us-west", "us-west-1a")
AP = NodeIdentity("ap-south", "ap-south", "ap-south-1a")
OPTIONS = CompileOptions(listener_port=10000)


def route_policy(rules: str, hosts: str = "[web.example]", name: str = "web") -> str:
    return doc("RoutePolicy", name, f"hosts: {hosts}\nhttp:\n{textwrap.dedent(rules)}")


def model(*docs: str, base: tuple[str, ...] = (CLUSTERS, WEB)) -> Model:
    return load_texts([(f"doc{i}.yaml", text) for i, text in enumerate((*base, *docs))])


def compile_all(m: Model, node: NodeIdentity = EU, **kw: Any) -> dict[str, dict[str, Message]]:
    return compile_node_resources(m, node, kw.pop("options", OPTIONS), **kw)


def routes_of(m: Model, node: NodeIdentity = EU) -> list[rc_pb2.Route]:
    (config,) = compile_all(m, node)[ROUTE].values()
    return [r for vh in config.virtual_hosts for r in vh.routes]  # type: ignore[attr-defined]


def cluster_of(m: Model, name: str, node: NodeIdentity = EU) -> cluster_pb2.Cluster:
    return compile_all(m, node)[CLUSTER][name]


def assignment_of(m: Model, name: str, node: NodeIdentity = EU) -> Any:
    return compile_all(m, node)[ENDPOINT][name]


# ---- expected protos -------------------------------------------------------------------------


def duration(ms: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def eds_cluster(name: str, connect_timeout_ms: int = 1000, **fields: Any) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads(), service_name=name
        ),
        connect_timeout=duration(connect_timeout_ms),
    )
    for key, value in fields.items():
        if isinstance(value, Message):
            getattr(c, key).CopyFrom(value)
        else:
            setattr(c, key, value)
    return c


def lb_endpoint(address: str, port: int = 8080, weight: int = 1) -> ec_pb2.LbEndpoint:
    return ec_pb2.LbEndpoint(
        endpoint=ec_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=address, port_value=port)
            )
        ),
        load_balancing_weight=u32(weight),
    )


def locality(
    cluster: str, region: str, zone: str, priority: int, weight: int, *eps: ec_pb2.LbEndpoint
) -> ec_pb2.LocalityLbEndpoints:
    return ec_pb2.LocalityLbEndpoints(
        locality=base_pb2.Locality(region=region, zone=zone, sub_zone=cluster),
        lb_endpoints=list(eps),
        load_balancing_weight=u32(weight),
        priority=priority,
    )


#: the WEB service's endpoints, one LocalityLbEndpoints per Ubiq cluster (priority filled in later)
WEB_LOCALITIES = {
    "eu-west": ("eu-west", "eu-west-1a", [lb_endpoint("10.0.0.1")]),
    "eu-west-2": ("eu-west", "eu-west-1b", [lb_endpoint("10.0.0.2")]),
    "us-west": ("us-west", "us-west-1a", [lb_endpoint("10.0.1.1", 9000)]),
    "ap-south": ("ap-south", "ap-south-1a", [lb_endpoint("10.0.2.1", weight=3)]),
}


def web_locality(
    cluster: str, priority: int, weight: int | None = None
) -> ec_pb2.LocalityLbEndpoints:
    region, zone, eps = WEB_LOCALITIES[cluster]
    total = sum(e.load_balancing_weight.value for e in eps)
    return locality(cluster, region, zone, priority, total if weight is None else weight, *eps)


def priorities(cla: Any) -> list[tuple[str, int]]:
    return [(e.locality.sub_zone, e.priority) for e in cla.endpoints]
