"""Responses built from pre-serialized bytes are what protobuf serializes (SotW: byte for byte),
for any strings: short ones take ``wire.text``'s one-byte-length path, long ones the varint."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from hypothesis import given
from hypothesis import strategies as st

from controlplane.xds import wire

strings = st.one_of(st.text(max_size=40), st.text(min_size=100, max_size=300))
payloads = st.lists(st.binary(min_size=1, max_size=300), max_size=4)  # a resource is never empty


def _anys(type_url: str, values: list[bytes]) -> list[any_pb2.Any]:
    return [any_pb2.Any(type_url=type_url, value=v) for v in values]


@given(strings, strings, strings, payloads)
def test_sotw_response_is_protobufs_own_encoding(
    version: str, type_url: str, nonce: str, values: list[bytes]
) -> None:
    resources = [wire.sotw_resource(wire.any_message(type_url, v)) for v in values]
    expected = discovery_pb2.DiscoveryResponse(
        version_info=version, resources=_anys(type_url, values), type_url=type_url, nonce=nonce
    )
    built = wire.sotw_response(version, resources, type_url, nonce)
    assert built == expected.SerializeToString(deterministic=True)


@given(strings, strings, strings, payloads, st.lists(strings, max_size=3))
def test_delta_response_is_protobufs_own_encoding(
    version: str, type_url: str, nonce: str, values: list[bytes], removed: list[str]
) -> None:
    names = [f"r{i}" for i in range(len(values))]
    resources = [
        wire.delta_resource(n, "v1", wire.any_message(type_url, v))
        for n, v in zip(names, values, strict=True)
    ]
    expected = discovery_pb2.DeltaDiscoveryResponse(
        system_version_info=version,
        resources=[
            discovery_pb2.Resource(name=n, version="v1", resource=a)
            for n, a in zip(names, _anys(type_url, values), strict=True)
        ],
        type_url=type_url,
        nonce=nonce,
        removed_resources=removed,
    )
    built = wire.delta_response(version, resources, type_url, nonce, removed)
    # a Resource's fields are written name first (valid protobuf, not protobuf's own order)
    assert discovery_pb2.DeltaDiscoveryResponse.FromString(built) == expected
