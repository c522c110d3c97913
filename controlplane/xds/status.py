"""What each connected proxy holds: ACKed versions, last NACK, responses sent.

``StatusRegistry`` is written by the ADS server and read by the REST API and ``ubiq status``
through ``proxies()`` (frozen values). ``controlplane.xds.metrics`` exposes the same numbers to
Prometheus, read at scrape time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from envoy.config.core.v3 import base_pb2

from controlplane.xds.events import Acked, Event, InSync, Nacked, Response, StaleIgnored


@dataclass(frozen=True, slots=True)
class NackStatus:
    type_url: str
    version_info: str
    names: tuple[str, ...]
    message: str
    at: float


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    stream_id: int
    node_id: str
    cluster: str
    locality: str  # region/zone/sub_zone
    group: str
    mode: str  # "sotw" | "delta"
    connected_since: float
    acked: Mapping[str, str]  # type_url -> version_info ACKed (or held in sync, see InSync)
    responses_sent: Mapping[str, int]  # type_url -> count
    nacks: int
    last_nack: NackStatus | None


@dataclass(slots=True)
class _Proxy:
    stream_id: int
    node_id: str
    cluster: str
    locality: str
    group: str
    mode: str
    connected_since: float
    acked: dict[str, str] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)
    nacks: int = 0
    last_nack: NackStatus | None = None

    def freeze(self) -> ProxyStatus:
        return ProxyStatus(
            stream_id=self.stream_id,
            node_id=self.node_id,
            cluster=self.cluster,
            locality=self.locality,
            group=self.group,
            mode=self.mode,
            connected_since=self.connected_since,
            acked=MappingProxyType(dict(self.acked)),
            responses_sent=MappingProxyType(dict(self.sent)),
            nacks=self.nacks,
            last_nack=self.last_nack,
        )


def locality_of(node: base_pb2.Node) -> str:
    loc = node.locality
    return "/".join(p for p in (loc.region, loc.zone, loc.sub_zone) if p)


class StatusRegistry:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._proxies: dict[int, _Proxy] = {}
        self._lock = threading.Lock()
        self.responses_total: Counter[str] = Counter()  # type_url -> responses sent
        self.acks_total: Counter[str] = Counter()
        self.nacks_total: Counter[str] = Counter()
        self.stale_total: Counter[str] = Counter()

    def connect(self, stream_id: int, node: base_pb2.Node, group: str, mode: str) -> None:
        proxy = _Proxy(
            stream_id=stream_id,
            node_id=str(node.id),
            cluster=str(node.cluster),
            locality=locality_of(node),
            group=group,
            mode=mode,
            connected_since=self._clock(),
        )
        with self._lock:
            self._proxies[stream_id] = proxy

    def disconnect(self, stream_id: int) -> None:
        with self._lock:
            self._proxies.pop(stream_id, None)

    def sent(self, stream_id: int, response: Response) -> None:
        self.responses_total[response.type_url] += 1
        proxy = self._proxies.get(stream_id)
        if proxy is not None:
            proxy.sent[response.type_url] += 1

    def record(self, stream_id: int, event: Event) -> None:
        proxy = self._proxies.get(stream_id)
        if isinstance(event, Acked):
            self.acks_total[event.type_url] += 1
            if proxy is not None:
                proxy.acked[event.type_url] = event.version_info
        elif isinstance(event, Nacked):
            self.nacks_total[event.type_url] += 1
            if proxy is not None:
                proxy.nacks += 1
                proxy.last_nack = NackStatus(
                    event.type_url, event.version_info, event.names, event.message, self._clock()
                )
        elif isinstance(event, InSync):
            if proxy is not None:
                proxy.acked[event.type_url] = event.version_info
        elif isinstance(event, StaleIgnored):
            self.stale_total[event.type_url] += 1

    def acked_versions(self, stream_id: int) -> Mapping[str, str]:
        """Cheap per-stream read (no copy of the whole registry)."""
        proxy = self._proxies.get(stream_id)
        return MappingProxyType(proxy.acked) if proxy is not None else MappingProxyType({})

    def __len__(self) -> int:
        return len(self._proxies)

    def proxies(self) -> list[ProxyStatus]:
        with self._lock:
            proxies = list(self._proxies.values())
        return sorted(
            (p.freeze() for p in proxies), key=lambda s: (s.group, s.node_id, s.stream_id)
        )
