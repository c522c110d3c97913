"""Values the per-stream state machine hands to the server: responses to write and what happened."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.xds import wire
from controlplane.xds.snapshot import Entry


@dataclass(frozen=True, slots=True)
class Response:
    """One DiscoveryResponse (or DeltaDiscoveryResponse) to write on the stream."""

    type_url: str
    nonce: str
    version_info: str  # SotW version_info; Delta system_version_info
    entries: tuple[Entry, ...]
    removed: tuple[str, ...] = ()
    delta: bool = False
    joined: bytes | None = None  # SotW: the entries' resource bytes, joined once per snapshot

    def encode(self) -> bytes:
        if self.delta:
            return wire.delta_response(
                self.version_info,
                (e.delta_bytes for e in self.entries),
                self.type_url,
                self.nonce,
                self.removed,
            )
        if self.joined is not None:
            return wire.sotw_response(self.version_info, (self.joined,), self.type_url, self.nonce)
        return wire.sotw_response(
            self.version_info, (e.sotw_bytes for e in self.entries), self.type_url, self.nonce
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)


@dataclass(frozen=True, slots=True)
class Acked:
    type_url: str
    version_info: str
    nonce: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Nacked:
    """Envoy rejected a response: ``message`` is Envoy's own error_detail text."""

    type_url: str
    version_info: str
    nonce: str
    names: tuple[str, ...]
    message: str
    code: int


@dataclass(frozen=True, slots=True)
class StaleIgnored:
    type_url: str
    nonce: str


@dataclass(frozen=True, slots=True)
class InSync:
    """The client holds exactly what the snapshot's ``version_info`` gives it for this type, though
    no response carried that version (nothing changed for it, or it unsubscribed what did)."""

    type_url: str
    version_info: str


Event = Acked | Nacked | StaleIgnored | InSync


@dataclass(frozen=True, slots=True)
class Step:
    responses: tuple[Response, ...] = ()
    events: tuple[Event, ...] = ()
