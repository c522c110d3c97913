"""What each connected proxy holds: ACKed versions, last NACK, responses sent.

``StatusRegistry`` is written by the ADS server and read by the REST API and ``ubiq status``
through ``proxies()`` (frozen values). ``XdsCollector`` exposes the same numbers to
Prometheus, read at scrape time from the registry passed in.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from envoy.config.core.v3 import base_pb2
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from controlplane.xds.events import Acked, Event, InSync, Nacked, Response, StaleIgnored
from controlplane.xds.resources import short_name


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


class XdsCollector(Collector):
    """Prometheus view of a StatusRegistry, read at scrape time."""

    def __init__(self, status: StatusRegistry) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily(
            "ubiq_xds_connected_proxies", "xDS streams open, by node group", labels=["group"]
        )
        groups = Counter(p.group for p in self._status.proxies())
        for group, count in sorted(groups.items()):
            connected.add_metric([group], count)
        yield connected
        for name, doc, counts in (
            ("ubiq_xds_responses", "xDS responses sent", self._status.responses_total),
            ("ubiq_xds_acks", "xDS responses ACKed", self._status.acks_total),
            ("ubiq_xds_nacks", "xDS responses rejected (NACK)", self._status.nacks_total),
            (
                "ubiq_xds_stale_requests",
                "xDS requests ignored: stale nonce",
                self._status.stale_total,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["type"])
            for type_url, count in sorted(counts.items()):
                family.add_metric([short_name(type_url)], count)
            yield family


def register_metrics(status: StatusRegistry, registry: CollectorRegistry) -> XdsCollector:
    collector = XdsCollector(status)
    registry.register(collector)
    return collector
