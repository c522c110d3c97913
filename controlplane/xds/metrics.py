"""The xDS side's metrics: pushes, ACKs/NACKs, proxies by state, push latency and convergence.

Names and labels follow Istio's pilot where there is one (``pilot_xds_pushes{type}`` ->
``ubiq_xds_pushes_total{type}``, ``pilot_proxy_convergence_time`` ->
``ubiq_xds_convergence_duration_seconds``); ``type`` is ``cds``, ``eds``, ``lds``, ``rds`` or
``sds``. Counts are read from the ``StatusRegistry`` at scrape time. Two durations are timed
here, on the event loop, from the events the ADS server records:

- push latency, per proxy and type: from the publication of the group's snapshot (or the proxy's
  connection, if later) to the proxy ACKing that type's new version;
- convergence, per accepted model: from the model being handed to the xDS runtime to the moment
  every proxy that was connected to a changed group holds the new versions of every type.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from controlplane.xds import resources as rs
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.events import Acked, Event, InSync
from controlplane.xds.status import ProxyStatus, StatusRegistry
from controlplane.xds.sync_state import NACKED, SYNCED, overall, proxy_sync

TYPE_LABELS: Mapping[str, str] = {
    rs.CLUSTER: "cds",
    rs.ENDPOINT: "eds",
    rs.LISTENER: "lds",
    rs.ROUTE: "rds",
    rs.SECRET: "sds",
}
CORE_TYPES = ("cds", "eds", "lds", "rds")  # always exported, at 0 until the first event
STATES = ("synced", "stale", "nacked")
PUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONVERGENCE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
MAX_PENDING_CHANGES = 256  # changes waiting for convergence; the oldest is dropped beyond it


def type_label(type_url: str) -> str:
    return TYPE_LABELS.get(type_url, rs.short_name(type_url).lower())


def synced(acked: Mapping[str, str], snapshot_version: Callable[[str], str]) -> bool:
    """A proxy holds its group's snapshot: it ACKed something, and every type it holds is the
    snapshot's version of that type (convergence timing)."""
    return bool(acked) and all(snapshot_version(t) == v for t, v in acked.items())


def proxy_state(proxy: ProxyStatus, cache: SnapshotCache) -> str:
    """``synced``, ``nacked`` or ``stale``: the state ``ubiq status`` shows (``sync_state``), for
    a label; a proxy whose group has no snapshot, or that was sent nothing yet, is ``stale``."""
    sync = proxy_sync(proxy, cache.get(proxy.group), ())
    state = overall(sync["sync"], sync["problem"])
    return state.lower() if state in (SYNCED, NACKED) else "stale"


@dataclass(slots=True)
class _Change:
    started: float
    waiting: set[int] = field(default_factory=set)  # streams that do not hold it yet


class XdsTiming:
    """Push latency and convergence histograms, fed by ``MeteredStatus`` and ``XdsRuntime``."""

    def __init__(
        self,
        cache: SnapshotCache,
        registry: CollectorRegistry,
        held: Callable[[int], Mapping[str, str]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache = cache
        self._held = held  # stream -> type_url -> version it holds
        self._clock = clock
        self._streams: dict[int, tuple[str, float]] = {}  # stream -> (group, connected at)
        self._published: dict[str, float] = {}  # group -> when its snapshot was published
        self._changes: deque[_Change] = deque()
        self.push_seconds = Histogram(
            "ubiq_xds_push_duration_seconds",
            "Time from a snapshot's publication (or the proxy's connection, if later) to the"
            " proxy's ACK of the new version of a type",
            ["type"],
            buckets=PUSH_BUCKETS,
            registry=registry,
        )
        for label in CORE_TYPES:
            self.push_seconds.labels(label)
        self.convergence_seconds = Histogram(
            "ubiq_xds_convergence_duration_seconds",
            "Time from a policy model being handed to xDS to every proxy connected to a changed"
            " group holding the new versions",
            buckets=CONVERGENCE_BUCKETS,
            registry=registry,
        )

    def connected(self, stream_id: int, group: str) -> None:
        self._streams[stream_id] = (group, self._clock())

    def disconnected(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)
        for change in self._changes:
            change.waiting.discard(stream_id)
        self._settle()

    def published(self, started: float, groups: Iterable[str]) -> None:
        """Snapshots of ``groups`` were published for a model handed in at ``started``."""
        now = self._clock()
        changed = set(groups)
        for group in changed:
            self._published[group] = now
        waiting = {
            stream_id
            for stream_id, (group, _) in self._streams.items()
            if group in changed and not self._holds_current(stream_id, group)
        }
        if not waiting:
            return
        self._changes.append(_Change(started, waiting))
        if len(self._changes) > MAX_PENDING_CHANGES:
            self._changes.popleft()

    def acked(self, stream_id: int, type_url: str, version: str, before: str | None) -> None:
        """The stream now holds ``version`` of ``type_url`` (it held ``before``)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        group, since = stream
        snapshot = self._cache.get(group)
        if snapshot is None or snapshot.type_version(type_url) != version:
            return
        now = self._clock()
        if before != version:
            start = max(self._published.get(group, since), since)
            self.push_seconds.labels(type_label(type_url)).observe(max(now - start, 0.0))
        if self._changes and synced(self._held(stream_id), snapshot.type_version):
            for change in self._changes:
                change.waiting.discard(stream_id)
            self._settle()

    def _holds_current(self, stream_id: int, group: str) -> bool:
        snapshot = self._cache.get(group)
        return snapshot is not None and synced(self._held(stream_id), snapshot.type_version)

    def _settle(self) -> None:
        """Observe and forget every change whose proxies all hold it."""
        done = [c for c in self._changes if not c.waiting]
        if not done:
            return
        now = self._clock()
        for change in done:
            self._changes.remove(change)
            self.convergence_seconds.observe(max(now - change.started, 0.0))

    def pending_seconds(self) -> float:
        """Age of the oldest change not yet held by every proxy; 0 when converged."""
        if not self._changes:
            return 0.0
        return max(self._clock() - self._changes[0].started, 0.0)


class MeteredStatus(StatusRegistry):
    """A StatusRegistry that also hands connections and ACKs to ``XdsTiming``."""

    def __init__(
        self,
        cache: SnapshotCache,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock)
        self.timing = XdsTiming(cache, registry, self.acked_versions, monotonic)

    def connect(self, stream_id: int, node: base_pb2.Node, group: str, mode: str) -> None:
        super().connect(stream_id, node, group, mode)
        self.timing.connected(stream_id, group)

    def disconnect(self, stream_id: int) -> None:
        super().disconnect(stream_id)
        self.timing.disconnected(stream_id)

    def record(self, stream_id: int, event: Event) -> None:
        if not isinstance(event, Acked | InSync):
            super().record(stream_id, event)
            return
        before = self.acked_versions(stream_id).get(event.type_url)
        super().record(stream_id, event)
        self.timing.acked(stream_id, event.type_url, event.version_info, before)


class XdsCollector(Collector):
    """Counts and gauges read from the StatusRegistry and the cache at scrape time."""

    def __init__(
        self, status: StatusRegistry, cache: SnapshotCache, timing: XdsTiming | None = None
    ) -> None:
        self._status = status
        self._cache = cache
        self._timing = timing

    def collect(self) -> Iterator[Metric]:
        proxies = self._status.proxies()
        groups = sorted({*self._cache.groups(), *(p.group for p in proxies)})
        connected = GaugeMetricFamily(
            "ubiq_xds_connected_proxies",
            "xDS streams open, by node group (0 for a group with none)",
            labels=["group"],
        )
        by_group = Counter(p.group for p in proxies)
        for group in groups:
            connected.add_metric([group], by_group[group])
        yield connected
        states = GaugeMetricFamily(
            "ubiq_xds_proxies",
            "Connected proxies by group and state against the group's current snapshot:"
            " synced, stale (not yet ACKed), nacked (rejected a response and not synced)",
            labels=["group", "state"],
        )
        by_state = Counter((p.group, proxy_state(p, self._cache)) for p in proxies)
        for group in groups:
            for state in STATES:
                states.add_metric([group, state], by_state[(group, state)])
        yield states
        for name, doc, counts in (
            ("ubiq_xds_pushes", "xDS responses sent to proxies, by type", self._status.responses_total),
            ("ubiq_xds_acks", "xDS responses ACKed by proxies, by type", self._status.acks_total),
            ("ubiq_xds_nacks", "xDS responses rejected (NACKed) by proxies, by type", self._status.nacks_total),
            ("ubiq_xds_stale_requests", "xDS requests ignored: stale nonce, by type", self._status.stale_total),
        ):  # fmt: skip
            family = CounterMetricFamily(name, doc, labels=["type"])
            totals = Counter(dict.fromkeys(CORE_TYPES, 0))
            for type_url, count in counts.items():
                totals[type_label(type_url)] += count
            for label, count in sorted(totals.items()):
                family.add_metric([label], count)
            yield family
        if self._timing is not None:
            yield GaugeMetricFamily(
                "ubiq_xds_convergence_pending_seconds",
                "Age of the oldest accepted model not yet held by every proxy; 0 when converged",
                value=self._timing.pending_seconds(),
            )


def register_metrics(
    status: StatusRegistry,
    cache: SnapshotCache,
    registry: CollectorRegistry,
    timing: XdsTiming | None = None,
) -> XdsCollector:
    collector = XdsCollector(status, cache, timing)
    registry.register(collector)
    return collector
