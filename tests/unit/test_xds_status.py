"""StatusRegistry: what each connected proxy holds."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2

from controlplane.xds.events import Acked, Nacked, Response
from controlplane.xds.resources import CLUSTER, ROUTE
from controlplane.xds.status import StatusRegistry


def test_status_records_acks_nacks_and_sends() -> None:
    status = StatusRegistry(clock=lambda: 100.0)
    node = base_pb2.Node(id="envoy-1", cluster="eu-1")
    node.locality.region, node.locality.zone = "eu", "eu-a"
    status.connect(1, node, "eu-1/proxy", "sotw")
    status.sent(1, Response(CLUSTER, "1", "v1", ()))
    status.record(1, Acked(CLUSTER, "v1", "1", ("a",)))
    status.sent(1, Response(ROUTE, "2", "r2", ()))
    status.record(1, Nacked(ROUTE, "r2", "2", ("main",), "missing ): (", 3))
    (proxy,) = status.proxies()
    assert (proxy.node_id, proxy.cluster, proxy.locality, proxy.group) == (
        "envoy-1",
        "eu-1",
        "eu/eu-a",
        "eu-1/proxy",
    )
    assert proxy.connected_since == 100.0
    assert dict(proxy.acked) == {CLUSTER: "v1"}
    assert dict(proxy.responses_sent) == {CLUSTER: 1, ROUTE: 1}
    assert proxy.last_nack is not None and proxy.last_nack.message == "missing ): ("
    assert proxy.last_nack.names == ("main",) and proxy.nacks == 1

    status.disconnect(1)
    assert status.proxies() == []
