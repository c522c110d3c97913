"""EDNS(0) OPT records and the Client Subnet option (RFC 6891, RFC 7871), as raw bytes.

A query's ECS option is validated here (FORMERR on anything RFC 7871 section 7.1.1 forbids:
unknown family, prefix longer than the family, address longer than the prefix needs, bits set
beyond the prefix, a non-zero scope). The echo in the response repeats the query's family,
source prefix and address and sets the scope the caller gives (answer.py: the source prefix, or
a longer group prefix inside it, when the answer depends on the client; 0 when it does not).
"""

from __future__ import annotations

from typing import NamedTuple

from controlplane.errors import DnsFormatError

ECS_CODE = 8
_FAMILY_BITS = {1: 32, 2: 128}


class ClientSubnet(NamedTuple):
    family: int  # 1 = IPv4, 2 = IPv6
    source: int  # SOURCE PREFIX-LENGTH
    address: int  # the address as an int, zero-padded to the family's width
    data: bytes  # the option data as received, for the echo


_PARSED: dict[bytes, ClientSubnet] = {}  # resolvers repeat their subnets: parse each once
_PARSED_LIMIT = 65536


def parse_ecs(data: bytes) -> ClientSubnet:
    found = _PARSED.get(data)
    if found is not None:
        return found
    ecs = _parse_ecs(data)
    if len(_PARSED) >= _PARSED_LIMIT:
        _PARSED.clear()
    _PARSED[data] = ecs
    return ecs


def _parse_ecs(data: bytes) -> ClientSubnet:
    if len(data) < 4:
        raise DnsFormatError(f"ECS option too short: {len(data)} bytes")
    family = int.from_bytes(data[0:2])
    source, scope = data[2], data[3]
    bits = _FAMILY_BITS.get(family)
    if bits is None:
        raise DnsFormatError(f"ECS family {family} is unknown")
    if source > bits or scope != 0:
        raise DnsFormatError(f"ECS prefix {source}/scope {scope} invalid for family {family}")
    raw = data[4:]
    if len(raw) != (source + 7) // 8:
        raise DnsFormatError(f"ECS address has {len(raw)} bytes for a /{source} prefix")
    value = int.from_bytes(raw) if raw else 0
    if source % 8 and value & ((1 << (8 - source % 8)) - 1):
        raise DnsFormatError("ECS address has bits set beyond its prefix")
    return ClientSubnet(family, source, value << (bits - 8 * len(raw)), data)


def echo_option(ecs: ClientSubnet, scope: int) -> bytes:
    """The ECS option (code, length, data) for the response, with SCOPE PREFIX-LENGTH set."""
    data = ecs.data
    return ECS_CODE.to_bytes(2) + len(data).to_bytes(2) + data[:3] + bytes((scope,)) + data[4:]


def make_opt(udp_size: int, options: bytes = b"", ext_rcode: int = 0) -> bytes:
    """An OPT pseudo-RR: root owner, our UDP payload size, version 0, DO clear."""
    return (
        b"\x00\x00\x29"
        + udp_size.to_bytes(2)
        + bytes((ext_rcode, 0, 0, 0))
        + len(options).to_bytes(2)
        + options
    )
