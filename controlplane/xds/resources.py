"""Envoy v3 resource type URLs, the ADS push order, the resource mapping the compiler hands us,
and the protobuf wire pieces written around pre-serialized bytes (``varint``, ``field``: the
compiler's ``route_wire``/``eds_wire`` and ``xds.wire``'s responses)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

from google.protobuf.message import Message

_PREFIX = "type.googleapis.com/"

LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
#: VHDS: the virtual hosts of a RouteConfiguration that carries ``vhds``, each named
#: ``<route configuration name>/<virtual host name>``; Delta xDS only (Envoy's own rule)
VIRTUAL_HOST = _PREFIX + "envoy.config.route.v3.VirtualHost"

HTTP_CONNECTION_MANAGER = (
    _PREFIX + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)

#: Make-before-break push order on ADS (Envoy xDS protocol, "eventual consistency considerations").
#: Secrets go first: clusters and listeners that reference them warm until they arrive.
ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
PUSH_ORDER: tuple[str, ...] = (SECRET, *ORDER, VIRTUAL_HOST)

#: Types served over Delta xDS only: a SotW request for them gets no answer.
DELTA_ONLY_TYPES: frozenset[str] = frozenset({VIRTUAL_HOST})

#: Types whose subscribed names are namespaces: a subscription to ``N`` selects every resource
#: named ``N/<anything>`` (and one named ``N`` itself). Envoy subscribes to VHDS with the route
#: configuration's name (``SubscriptionOptions.use_namespace_matching_``).
NAMESPACED_TYPES: frozenset[str] = frozenset({VIRTUAL_HOST})

#: Types whose SotW responses are the complete set: a resource left out is removed.
#: The other types only ever carry the names the client asked for. A first request for one of
#: these that names nothing is a (legacy) wildcard subscription: Envoy's VHDS asks that way
#: (its namespace, the route configuration's name, stays in Envoy; measured with Envoy 1.40).
WILDCARD_TYPES: frozenset[str] = frozenset({LISTENER, CLUSTER, VIRTUAL_HOST})

SHORT_NAMES: Mapping[str, str] = {
    LISTENER: "LDS",
    ROUTE: "RDS",
    CLUSTER: "CDS",
    ENDPOINT: "EDS",
    SECRET: "SDS",
    VIRTUAL_HOST: "VHDS",
}

#: type_url -> resource name -> proto message
Resources = Mapping[str, Mapping[str, Message]]


def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])


def namespace_of(name: str) -> str:
    """``ubiq-http/checkout`` -> ``ubiq-http`` (a VHDS resource's route configuration)."""
    return name.rpartition("/")[0]


# -- resources that already hold their wire bytes ------------------------------------------
#
# A RouteConfiguration with 10,000 virtual hosts costs ~15 ms to assemble and serialize again
# after one RoutePolicy changed. Protobuf lets a message be written as the concatenation of its
# tagged fields, so the compiler keeps each virtual host's tagged bytes and splices them
# (``Spliced``); ``Snapshot.build`` reads ``PreSerialized.serialized(name)`` and never builds the
# message. The message is parsed from those bytes only when someone asks for it (the API's dry
# run, tests), so the mapping is still a ``Mapping[str, Message]`` everywhere else.

M = TypeVar("M", bound=Message, covariant=True)


class Spliced(Generic[M]):
    """One message as ``head`` + ``parts`` (each a complete tagged field), joined on first use.

    Valid wire format as long as every part is a whole field; equal to the message's own
    deterministic serialization when the fields come in field-number order (tested)."""

    __slots__ = ("_data", "_head", "_message", "_parse", "_parts")

    def __init__(self, head: bytes, parts: Sequence[bytes], parse: Callable[[bytes], M]) -> None:
        self._head = head
        self._parts = parts
        self._parse = parse
        self._data: bytes | None = None
        self._message: M | None = None

    def serialized(self) -> bytes:
        if self._data is None:
            self._data = self._head + b"".join(self._parts)
            self._parts = ()  # the joined bytes replace them
        return self._data

    def message(self) -> M:
        if self._message is None:
            self._message = self._parse(self.serialized())
        return self._message


class PreSerialized(Mapping[str, Message]):
    """name -> message, where each message is held as bytes and parsed only when read."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Spliced[Message]]) -> None:
        self._items = items

    def __getitem__(self, name: str) -> Message:
        return self._items[name].message()

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items  # Mapping's own would parse the message to find out

    def held(self) -> Mapping[str, Spliced[Message]]:
        """Every held item by name (read-only: the mapping is shared)."""
        return self._items

    def item(self, name: str) -> Spliced[Message]:
        """The held item: the same object means the same bytes (a snapshot reuses its Entry)."""
        return self._items[name]

    def serialized(self, name: str) -> bytes:
        return self._items[name].serialized()


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
    """A length-delimited field (string, bytes or message): tag, length, bytes."""
    return varint((number << 3) | 2) + varint(len(data)) + data
