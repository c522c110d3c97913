"""Request builders and response readers for replaying xDS sequences against XdsStream."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2  # type: ignore[import-untyped]

from controlplane.xds.events import Response, Step
from controlplane.xds.snapshot import Snapshot
from tests.support.xds_resources import make_resources

NODE = base_pb2.Node(id="envoy-1", cluster="eu-west-1")


def sotw(
    type_url: str,
    names: Iterable[str] = (),
    *,
    nonce: str = "",
    version: str = "",
    error: str | None = None,
) -> discovery_pb2.DiscoveryRequest:
    request = discovery_pb2.DiscoveryRequest(
        node=NODE,
        type_url=type_url,
        resource_names=list(names),
        response_nonce=nonce,
        version_info=version,
    )
    if error is not None:
        request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return request


def delta(
    type_url: str,
    subscribe: Iterable[str] = (),
    unsubscribe: Iterable[str] = (),
    *,
    nonce: str = "",
    initial: Mapping[str, str] | None = None,
    error: str | None = None,
) -> discovery_pb2.DeltaDiscoveryRequest:
    request = discovery_pb2.DeltaDiscoveryRequest(
        node=NODE,
        type_url=type_url,
        resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe),
        response_nonce=nonce,
        initial_resource_versions=dict(initial or {}),
    )
    if error is not None:
        request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return request


def ack(response: Response, names: Iterable[str] = ()) -> discovery_pb2.DiscoveryRequest:
    """The SotW ACK Envoy sends: its subscription, the response's version and nonce."""
    return sotw(response.type_url, names, nonce=response.nonce, version=response.version_info)


def nack(
    response: Response, error: str, names: Iterable[str] = (), version: str = ""
) -> discovery_pb2.DiscoveryRequest:
    return sotw(response.type_url, names, nonce=response.nonce, version=version, error=error)


def only(step: Step) -> Response:
    assert len(step.responses) == 1, step.responses
    return step.responses[0]


def decode_sotw(response: Response) -> discovery_pb2.DiscoveryResponse:
    return discovery_pb2.DiscoveryResponse.FromString(response.encode())


def decode_delta(response: Response) -> discovery_pb2.DeltaDiscoveryResponse:
    return discovery_pb2.DeltaDiscoveryResponse.FromString(response.encode())


def snapshot(
    backends: Mapping[str, list[int]] | None = None,
    route_to: str = "a",
    tag: str = "v1",
    listener_port: int = 8080,
) -> Snapshot:
    chosen = dict(backends) if backends is not None else {"a": [9001], "b": [9002]}
    return Snapshot.build(make_resources(listener_port, chosen, route_to, tag))


@functools.cache
def sample_snapshots() -> list[Snapshot]:
    """Three snapshots that differ in endpoints, routes and listener port: the fuzz tests'
    sequences move between them."""
    return [
        snapshot(),
        snapshot({"a": [9001]}, tag="v2"),
        snapshot({"c": [9003], "d": [9004]}, route_to="c", tag="v3", listener_port=8081),
    ]
