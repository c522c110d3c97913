"""Envoy bootstrap rendering."""

from __future__ import annotations

import json

import pytest
import yaml

from controlplane.xds.bootstrap import render_bootstrap, render_grpc_bootstrap
from controlplane.xds.compiler.options import NodeIdentity
from controlplane.xds.node import (
    CLUSTER_KEY,
    DEFAULT_ROLE,
    PROXYLESS_ROLE,
    ROLE_KEY,
    group_by_cluster,
    group_key,
)


@pytest.mark.parametrize(("mode", "api_type"), [("ads-sotw", "GRPC"), ("ads-delta", "DELTA_GRPC")])
def test_bootstrap_points_at_ads_with_node_identity(mode: str, api_type: str) -> None:
    text = render_bootstrap("n1", "eu-1", "eu", "eu-a", "127.0.0.1", 18000, 19000, mode)  # type: ignore[arg-type]
    doc = yaml.safe_load(text)
    assert doc["node"]["id"] == "n1"
    assert doc["node"]["metadata"]["ubiq.cluster"] == "eu-1"
    assert doc["node"]["locality"] == {"region": "eu", "zone": "eu-a"}
    assert doc["dynamic_resources"]["ads_config"]["api_type"] == api_type
    assert "lds_config" in doc["dynamic_resources"]
    assert doc["admin"]["address"]["socket_address"]["port_value"] == 19000
    (xds,) = doc["static_resources"]["clusters"]
    assert xds["type"] == "STATIC"
    address = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "127.0.0.1", "port_value": 18000}


def test_listenerless_and_hostname() -> None:
    doc = yaml.safe_load(
        render_bootstrap("n", "c", "r", "z", "xds.ubiq.svc", 18000, 19000, listenerless=True)
    )
    assert "lds_config" not in doc["dynamic_resources"]
    assert doc["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"


def test_odd_names_are_quoted() -> None:
    doc = yaml.safe_load(render_bootstrap('a: "b"', "c#1", "r", "z", "::1", 1, 2))
    assert doc["node"]["id"] == 'a: "b"' and doc["node"]["cluster"] == "c#1"


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        render_bootstrap("n", "c", "r", "z", "h", 1, 2, "rest")  # type: ignore[arg-type]


def test_bootstrap_nodes_land_in_the_groups_the_runtime_compiles() -> None:
    from envoy.config.core.v3 import base_pb2
    from google.protobuf import json_format

    node = base_pb2.Node()
    json_format.ParseDict(
        json.loads(render_grpc_bootstrap("n", "eu", "r", "z", "::1", 1))["node"], node
    )
    assert group_by_cluster(node) == group_key("eu", PROXYLESS_ROLE)
    envoy = yaml.safe_load(render_bootstrap("n", "eu", "r", "z", "127.0.0.1", 1, 2))["node"]
    assert envoy["metadata"] == {CLUSTER_KEY: "eu", ROLE_KEY: DEFAULT_ROLE}
    assert NodeIdentity("eu", "r").role == DEFAULT_ROLE


def test_every_replica_is_listed_once() -> None:
    doc = yaml.safe_load(
        render_bootstrap(
            "n",
            "c",
            "r",
            "z",
            "127.0.0.1",
            18000,
            19000,
            more_xds=[("127.0.0.2", 18000), ("127.0.0.1", 18000), ("::1", 18001)],
        )
    )
    (xds,) = doc["static_resources"]["clusters"]
    assert xds["type"] == "STATIC"
    endpoints = xds["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"] for e in endpoints] == [
        {"address": "127.0.0.1", "port_value": 18000},
        {"address": "127.0.0.2", "port_value": 18000},
        {"address": "::1", "port_value": 18001},
    ]
    mixed = yaml.safe_load(
        render_bootstrap("n", "c", "r", "z", "127.0.0.1", 1, 2, more_xds=[("xds.ubiq.svc", 1)])
    )
    assert mixed["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"
