"""Property: for any sequence of snapshots, an Envoy-like client fed by XdsStream converges to
the latest snapshot, never routes to a cluster it does not hold (make-before-break), and the
stream goes quiet once it has converged. Both SotW and Delta."""

from __future__ import annotations

from collections import deque

from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.xds.events import Response
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.stream import XdsStream
from tests.support.xds_replay import NODE, snapshot

NAMES = ("a", "b", "c", "d")


class Client:
    """Applies responses like Envoy: CDS/LDS (SotW) are whole sets; asks EDS for the clusters it
    holds (before ACKing CDS, as Envoy does); ACKs everything."""

    def __init__(self, stream: XdsStream) -> None:
        self.stream = stream
        self.delta = stream.delta
        self.held: dict[str, dict[str, str]] = {t: {} for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)}
        self.routes_to: set[str] = set()
        self.eds_names: set[str] = set()
        self.inbox: deque[Response] = deque()
        self.nonces: dict[str, str] = {}

    def send(self, request: discovery_pb2.DiscoveryRequest) -> None:
        self.inbox.extend(self.stream.on_request(request).responses)

    def request(self, type_url: str, names: list[str] | None = None) -> None:
        if self.delta:
            self.send(
                discovery_pb2.DeltaDiscoveryRequest(
                    node=NODE,
                    type_url=type_url,
                    response_nonce=self.nonces.get(type_url, ""),
                    resource_names_subscribe=names or [],
                )
            )
        else:
            self.send(
                discovery_pb2.DiscoveryRequest(
                    node=NODE,
                    type_url=type_url,
                    resource_names=names or [],
                    response_nonce=self.nonces.get(type_url, ""),
                )
            )

    def start(self) -> None:
        self.request(CLUSTER)
        self.request(LISTENER)
        self.request(ROUTE, ["main"])

    def apply(self, response: Response) -> None:
        held = self.held[response.type_url]
        if not self.delta and response.type_url in (CLUSTER, LISTENER):
            held.clear()
        for entry in response.entries:
            held[entry.name] = entry.version
            if response.type_url == ROUTE:
                config = route_pb2.RouteConfiguration()
                config.ParseFromString(_any_value(entry.any_bytes))
                self.routes_to = {r.route.cluster for v in config.virtual_hosts for r in v.routes}
        for name in response.removed:
            held.pop(name, None)
        self.nonces[response.type_url] = response.nonce
        if response.type_url == CLUSTER:
            wanted = set(self.held[CLUSTER])
            for gone in self.eds_names - wanted:
                self.held[ENDPOINT].pop(gone, None)
            if wanted != self.eds_names:
                added = sorted(wanted - self.eds_names)
                if self.delta:
                    self.send(
                        discovery_pb2.DeltaDiscoveryRequest(
                            type_url=ENDPOINT,
                            resource_names_subscribe=added,
                            resource_names_unsubscribe=sorted(self.eds_names - wanted),
                        )
                    )
                    self.eds_names = wanted
                else:
                    self.eds_names = wanted
                    self.request(ENDPOINT, sorted(wanted))
        if self.delta:
            ack: object = discovery_pb2.DeltaDiscoveryRequest(
                type_url=response.type_url, response_nonce=response.nonce
            )
        else:
            names = {ENDPOINT: sorted(self.eds_names), ROUTE: ["main"]}.get(response.type_url, [])
            ack = discovery_pb2.DiscoveryRequest(
                type_url=response.type_url,
                resource_names=names,
                response_nonce=response.nonce,
                version_info=response.version_info,
            )
        self.send(ack)

    def run(self, limit: int = 200) -> int:
        steps = 0
        while self.inbox:
            steps += 1
            assert steps < limit, "no convergence"
            self.apply(self.inbox.popleft())
            if self.held[ROUTE]:
                for cluster in self.routes_to:  # make-before-break
                    assert cluster in self.held[CLUSTER], (cluster, self.held)
                    assert cluster in self.held[ENDPOINT], (cluster, self.held)
        return steps


def _any_value(any_bytes: bytes) -> bytes:
    from google.protobuf import any_pb2

    return bytes(any_pb2.Any.FromString(any_bytes).value)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    chosen = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    ports = {n: [draw(st.integers(9000, 9003))] for n in sorted(chosen)}
    return snapshot(
        ports, route_to=draw(st.sampled_from(sorted(chosen))), tag=draw(st.sampled_from("xy"))
    )


def converged(client: Client, snap: Snapshot) -> None:
    for type_url in (CLUSTER, LISTENER, ROUTE):
        want = {n: e.version for n, e in snap.get(type_url).entries.items()}
        assert client.held[type_url] == want, type_url
    endpoints = {n: e.version for n, e in snap.get(ENDPOINT).entries.items()}
    assert {n: v for n, v in client.held[ENDPOINT].items() if n in endpoints} == endpoints


@settings(max_examples=60, deadline=None)
@given(st.booleans(), st.lists(snapshots(), min_size=1, max_size=6))
def test_converges_with_make_before_break(delta: bool, sequence: list[Snapshot]) -> None:
    stream = XdsStream(delta=delta)
    client = Client(stream)
    client.inbox.extend(stream.on_snapshot(sequence[0]).responses)
    client.start()
    client.run()
    converged(client, sequence[0])
    for snap in sequence[1:]:
        client.inbox.extend(stream.on_snapshot(snap).responses)
        client.run()
        converged(client, snap)
        assert stream.on_snapshot(snap).responses == ()  # quiet once converged
