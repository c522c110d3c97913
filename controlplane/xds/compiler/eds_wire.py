"""ClusterLoadAssignments held as their wire bytes, built without a message per node.

A ClusterLoadAssignment Ubiq builds is ``cluster_name`` (field 1) and one ``endpoints`` field (2)
per locality, nothing else; a ``LocalityLbEndpoints`` is ``locality`` (1), ``lb_endpoints`` (2),
``load_balancing_weight`` (3, a UInt32Value) and ``priority`` (5). Deterministic serialization
writes fields in number order, so a locality's bytes without weight and priority are serialized
once per round (``EndpointGroups``) and each node's assignment is the tagged name followed by,
per locality, those bytes with the weight and priority fields appended. 30,000 assignments at
10,000 services are joins of byte strings, not 30,000 messages built and serialized
(tests/unit/test_xds_compiler_eds_wire.py checks byte equality with the message built whole).
The message is parsed from the bytes only when read (the API's dry run, status, tests).
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.endpoint.v3 import endpoint_pb2

from controlplane.xds.resources import Spliced, field, varint

_CLUSTER_NAME_FIELD = 1  # ClusterLoadAssignment.cluster_name
_ENDPOINTS_FIELD = 2  # ClusterLoadAssignment.endpoints
_WEIGHT_TAG = bytes([(3 << 3) | 2])  # LocalityLbEndpoints.load_balancing_weight (message)
_PRIORITY_TAG = bytes([(5 << 3) | 0])  # LocalityLbEndpoints.priority (varint)
_VALUE_TAG = bytes([(1 << 3) | 0])  # UInt32Value.value (varint)
_UINT32_MAX = 0xFFFFFFFF


def _parse(data: bytes) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment.FromString(data)


class WireAssignment(Spliced[endpoint_pb2.ClusterLoadAssignment]):
    """One ClusterLoadAssignment as its deterministic wire bytes, named by ``cluster_name``;
    the message is parsed on first ``message()``. Equal bytes mean equal assignments."""

    __slots__ = ("cluster_name",)

    def __init__(
        self,
        cluster_name: str,
        data: bytes,
        message: endpoint_pb2.ClusterLoadAssignment | None = None,
    ) -> None:
        super().__init__(data, (), _parse)
        self.cluster_name = cluster_name
        self._data = data
        self._message = message

    @classmethod
    def of_message(cls, message: endpoint_pb2.ClusterLoadAssignment) -> WireAssignment:
        """An assignment built as a message (mutual TLS: compiled per node)."""
        return cls(message.cluster_name, message.SerializeToString(deterministic=True), message)

    def same(self, other: WireAssignment | None) -> bool:
        return other is not None and (other is self or other.serialized() == self.serialized())


def _uint32(value: int, what: str) -> int:
    if not 0 <= value <= _UINT32_MAX:
        raise ValueError(f"{what} {value} is out of the uint32 range")
    return value


def locality_field(locality: bytes, priority: int, weight: int) -> bytes:
    """One ``endpoints`` field: a locality serialized without weight and priority, with them."""
    weight_value = _VALUE_TAG + varint(_uint32(weight, "load_balancing_weight")) if weight else b""
    inner = locality + _WEIGHT_TAG + varint(len(weight_value)) + weight_value
    if _uint32(priority, "priority"):
        inner += _PRIORITY_TAG + varint(priority)
    return field(_ENDPOINTS_FIELD, inner)


def assignment(name: str, localities: Iterable[bytes]) -> WireAssignment:
    """``ClusterLoadAssignment(cluster_name=name, endpoints=...)`` from ``locality_field``s."""
    head = field(_CLUSTER_NAME_FIELD, name.encode()) if name else b""
    return WireAssignment(name, head + b"".join(localities))
