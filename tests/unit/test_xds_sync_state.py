"""Per-type sync state of a proxy against its group's snapshot (istioctl proxy-status style)."""

from __future__ import annotations

from types import MappingProxyType

from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER
from controlplane.xds.status import NackStatus, ProxyStatus
from controlplane.xds.sync_state import NACKED, NOT_SENT, STALE, SYNCED, overall, type_state


def proxy(acked: dict[str, str], sent: dict[str, int], nack: str | None = None) -> ProxyStatus:
    return ProxyStatus(
        stream_id=1,
        node_id="n",
        cluster="eu-west",
        locality="eu-west",
        group="eu-west/proxy",
        mode="sotw",
        connected_since=0.0,
        acked=MappingProxyType(acked),
        responses_sent=MappingProxyType(sent),
        nacks=1 if nack else 0,
        last_nack=NackStatus(nack, "v1", (), "bad", 0.0) if nack else None,
    )


def test_states() -> None:
    p = proxy({CLUSTER: "v2", ENDPOINT: "v1"}, {CLUSTER: 2, ENDPOINT: 1, LISTENER: 1}, ENDPOINT)
    assert type_state(p, CLUSTER, "v2") == SYNCED
    assert type_state(p, ENDPOINT, "v2") == NACKED
    assert type_state(p, ENDPOINT, "v1") == SYNCED  # an older NACK, since superseded
    assert type_state(p, LISTENER, "v2") == STALE  # sent, not ACKed yet
    assert type_state(p, "type.googleapis.com/x.Secret", "v1") == NOT_SENT


def test_overall_is_the_worst() -> None:
    assert overall({"CDS": SYNCED, "EDS": NACKED, "LDS": STALE}, None) == NACKED
    assert overall({"CDS": SYNCED, "LDS": STALE}, None) == STALE
    assert overall({"CDS": SYNCED, "SDS": NOT_SENT}, None) == SYNCED
    assert overall({}, "no configuration") == "UNKNOWN"
