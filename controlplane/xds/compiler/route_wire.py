"""Virtual hosts kept with their wire bytes, and RouteConfigurations spliced from them.

A RouteConfiguration Ubiq builds is ``name`` (field 1) and one ``virtual_hosts`` field (2) per
RoutePolicy, nothing else; protobuf's deterministic encoding writes fields in number order, so
its bytes are the tagged name followed by each virtual host's tagged bytes. Each virtual host is
serialized once when compiled (and memoised with it); after a RoutePolicy change a node's
RouteConfiguration is a join of 10,000 byte strings, not a rebuild and re-serialization of
10,000 messages (tests/unit/test_xds_compiler_route_wire.py checks byte equality with the
message built whole).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from controlplane.xds.resources import PreSerialized, Spliced

_NAME_FIELD = 1  # RouteConfiguration.name
_VIRTUAL_HOSTS_FIELD = 2  # RouteConfiguration.virtual_hosts


@dataclass(frozen=True, slots=True, eq=False)
class CompiledHost:
    """A virtual host and its ``RouteConfiguration.virtual_hosts`` field bytes. Never mutate
    ``message``: the bytes are what is served."""

    message: rc_pb2.VirtualHost
    field: bytes

    @classmethod
    def of(cls, host: rc_pb2.VirtualHost) -> CompiledHost:
        data = host.SerializeToString(deterministic=True)
        return cls(host, _field(_VIRTUAL_HOSTS_FIELD, data))


def reuse(old: CompiledHost | None, new: CompiledHost) -> CompiledHost:
    """``old`` when its bytes equal ``new``'s (equal bytes, equal messages), else ``new``."""
    return old if old is not None and old.field == new.field else new


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field: tag, length, bytes."""
    return _varint((number << 3) | 2) + _varint(len(data)) + data


def _parse(data: bytes) -> Message:
    message: Message = route_pb2.RouteConfiguration()
    message.ParseFromString(data)
    return message


def route_configuration(name: str, hosts: Iterable[CompiledHost]) -> PreSerialized:
    """``{name: RouteConfiguration(name, hosts in order)}``, held as spliced bytes."""
    parts = [host.field for host in hosts]
    return PreSerialized(
        {name: Spliced(_field(_NAME_FIELD, name.encode()) if name else b"", parts, _parse)}
    )
