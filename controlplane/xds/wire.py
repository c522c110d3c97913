"""Protobuf wire encoding of discovery responses from pre-serialized resources.

Every Envoy of a group receives the same resource bytes; only the nonce differs. Encoding a
response is therefore a concatenation of byte strings built once per snapshot, never a
re-serialization of the resources. Field numbers are those of envoy.service.discovery.v3.
"""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.xds.resources import field


def text(number: int, value: str) -> bytes:
    if not value:
        return b""
    data = value.encode()
    if len(data) < 0x80 and number < 16:  # one-byte tag and length: versions, nonces, type URLs
        return bytes(((number << 3) | 2, len(data))) + data
    return field(number, data)


def any_message(type_url: str, value: bytes) -> bytes:
    """google.protobuf.Any: type_url = 1, value = 2."""
    return text(1, type_url) + field(2, value)


def sotw_resource(any_bytes: bytes) -> bytes:
    """DiscoveryResponse.resources (2)."""
    return field(2, any_bytes)


def delta_resource(name: str, version: str, any_bytes: bytes) -> bytes:
    """DeltaDiscoveryResponse.resources (2) holding a Resource(name=3, version=1, resource=2)."""
    return field(2, text(3, name) + text(1, version) + field(2, any_bytes))


def sotw_response(
    version_info: str, resources: Iterable[bytes], type_url: str, nonce: str
) -> bytes:
    """DiscoveryResponse: version_info = 1, resources = 2, type_url = 4, nonce = 5."""
    return b"".join((text(1, version_info), *resources, text(4, type_url), text(5, nonce)))


def delta_response(
    system_version_info: str,
    resources: Iterable[bytes],
    type_url: str,
    nonce: str,
    removed: Iterable[str],
) -> bytes:
    """DeltaDiscoveryResponse: system_version_info = 1, resources = 2, type_url = 4, nonce = 5,
    removed_resources = 6."""
    return (
        text(1, system_version_info)
        + b"".join(resources)
        + text(4, type_url)
        + text(5, nonce)
        + b"".join(field(6, name.encode()) for name in removed)
    )
