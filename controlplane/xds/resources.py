"""Envoy v3 resource type URLs, the ADS push order, and the resource mapping the compiler hands us."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message

_PREFIX = "type.googleapis.com/"

LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

HTTP_CONNECTION_MANAGER = (
    _PREFIX + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)

#: Make-before-break push order on ADS (Envoy xDS protocol, "eventual consistency considerations").
#: Secrets go first: clusters and listeners that reference them warm until they arrive.
ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
PUSH_ORDER: tuple[str, ...] = (SECRET, *ORDER)

#: Types whose SotW responses are the complete set: a resource left out is removed.
#: The other types only ever carry the names the client asked for.
WILDCARD_TYPES: frozenset[str] = frozenset({LISTENER, CLUSTER})

SHORT_NAMES: Mapping[str, str] = {
    LISTENER: "LDS",
    ROUTE: "RDS",
    CLUSTER: "CDS",
    ENDPOINT: "EDS",
    SECRET: "SDS",
}

#: type_url -> resource name -> proto message
Resources = Mapping[str, Mapping[str, Message]]


def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])
