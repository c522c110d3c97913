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

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from controlplane.xds.resources import PreSerialized, Spliced, field

_NAME_FIELD = 1  # RouteConfiguration.name
_VIRTUAL_HOSTS_FIELD = 2  # RouteConfiguration.virtual_hosts


@dataclass(frozen=True, slots=True, eq=False)
class CompiledHost:
    """A virtual host and its ``RouteConfiguration.virtual_hosts`` field bytes. Never mutate
    ``message``: the bytes are what is served."""

    message: rc_pb2.VirtualHost
    field: bytes
    # (route configuration name, this host as a VHDS resource), made on first use
    _vhds: tuple[str, Spliced[Message]] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def of(cls, host: rc_pb2.VirtualHost) -> CompiledHost:
        data = host.SerializeToString(deterministic=True)
        return cls(host, field(_VIRTUAL_HOSTS_FIELD, data))

    def vhds_resource(self, route_config_name: str) -> Spliced[Message]:
        """This host as the VHDS resource ``<route_config_name>/<name>``: the same message with
        that name (Envoy keys VHDS hosts by ``VirtualHost.name`` and removes them by resource
        name, so the two must be equal). Spliced from the held bytes: the new ``name`` field,
        then every field after the old one (deterministic order puts ``name``, field 1, first).
        Made once per host object and kept, so unchanged hosts keep their snapshot Entry."""
        held = self._vhds
        if held is not None and held[0] == route_config_name:
            return held[1]
        body = _payload(self.field)
        rest = _skip_field(body, _NAME_FIELD)
        name = f"{route_config_name}/{self.message.name}"
        item: Spliced[Message] = Spliced(field(_NAME_FIELD, name.encode()), [rest], _parse_host)
        object.__setattr__(self, "_vhds", (route_config_name, item))
        return item


def reuse(old: CompiledHost | None, new: CompiledHost) -> CompiledHost:
    """``old`` when its bytes equal ``new``'s (equal bytes, equal messages), else ``new``."""
    return old if old is not None and old.field == new.field else new


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, offset after it) of the varint at ``data[at:]``."""
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _payload(tagged: bytes) -> bytes:
    """The bytes inside one length-delimited field (tag and length stripped)."""
    _, at = _read_varint(tagged, 0)
    length, at = _read_varint(tagged, at)
    return tagged[at : at + length]


def _skip_field(data: bytes, number: int) -> bytes:
    """``data`` without its leading length-delimited field ``number``."""
    tag, at = _read_varint(data, 0)
    if tag != (number << 3) | 2:
        raise ValueError(f"expected field {number} first, found tag {tag}")
    length, at = _read_varint(data, at)
    return data[at + length :]


def _parse_host(data: bytes) -> Message:
    message: Message = rc_pb2.VirtualHost()
    message.ParseFromString(data)
    return message


def vhds_resources(route_config_name: str, hosts: Iterable[CompiledHost]) -> PreSerialized:
    """``{<route_config_name>/<host name>: VirtualHost}`` for VHDS, held as spliced bytes."""
    items: dict[str, Spliced[Message]] = {}
    for host in hosts:
        item = host.vhds_resource(route_config_name)
        items[f"{route_config_name}/{host.message.name}"] = item
    return PreSerialized(dict(sorted(items.items())))


def patch_vhds_resources(
    old: PreSerialized,
    route_config_name: str,
    hosts: Mapping[str, CompiledHost],
    names: Iterable[str],
) -> PreSerialized:
    """``vhds_resources(route_config_name, hosts.values())`` given ``old``, that map before the
    hosts ``names`` (policy names) changed, appeared or went: a copy with those swapped."""
    items = dict(old.held())
    grown = False
    for name in names:
        key = f"{route_config_name}/{name}"
        host = hosts.get(name)
        if host is None:
            items.pop(key, None)
            continue
        grown = grown or key not in items
        items[key] = host.vhds_resource(route_config_name)
    return PreSerialized(dict(sorted(items.items())) if grown else items)


def _parse(data: bytes) -> Message:
    message: Message = route_pb2.RouteConfiguration()
    message.ParseFromString(data)
    return message


def route_configuration(name: str, hosts: Iterable[CompiledHost]) -> PreSerialized:
    """``{name: RouteConfiguration(name, hosts in order)}``, held as spliced bytes."""
    parts = [host.field for host in hosts]
    return PreSerialized(
        {name: Spliced(field(_NAME_FIELD, name.encode()) if name else b"", parts, _parse)}
    )
