"""Protobuf wire-format pieces for the byte-spliced resources (``route_wire``, ``eds_wire``).

The compiler writes a few fields by hand around bytes serialized once; it does not import
``xds.wire`` (the xDS response encoder), which sits above it.
"""

from __future__ import annotations

_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def varint(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number: int, data: bytes) -> bytes:
    """A length-delimited field: tag, length, bytes."""
    return varint((number << 3) | 2) + varint(len(data)) + data
