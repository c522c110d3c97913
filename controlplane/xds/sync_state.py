"""Is a proxy in step with the snapshot it should hold? Per type, like ``istioctl proxy-status``.

Pure: compares what a proxy ACKed (``ProxyStatus``) with its group's current snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from controlplane.xds.resources import ORDER, short_name
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import ProxyStatus

SYNCED, STALE, NACKED, NOT_SENT = "SYNCED", "STALE", "NACKED", "NOT SENT"


def type_state(proxy: ProxyStatus, type_url: str, expected: str) -> str:
    """SYNCED: holds ``expected``; NACKED: rejected something newer; STALE: holds an older
    version or has not ACKed yet; NOT SENT: never asked for this type."""
    acked = proxy.acked.get(type_url)
    if acked == expected:
        return SYNCED
    if proxy.last_nack is not None and proxy.last_nack.type_url == type_url:
        return NACKED
    if acked is None and not proxy.responses_sent.get(type_url):
        return NOT_SENT
    return STALE


def proxy_sync(
    proxy: ProxyStatus, snapshot: Snapshot | None, known_groups: Iterable[str]
) -> dict[str, Any]:
    """``sync``: short type name -> state; ``expected``: short type name -> snapshot version;
    ``problem``: why the proxy gets nothing, or None."""
    if snapshot is None:
        cluster = proxy.group.split("/", 1)[0]
        known = sorted({g.split("/", 1)[0] for g in known_groups})
        problem = (
            f"no configuration for group {proxy.group!r}: its ubiq.cluster (or node.cluster)"
            f" {cluster!r} is not a Cluster in the policy (known: {', '.join(known) or 'none'})"
        )
        return {"sync": {}, "expected": {}, "problem": problem}
    types = [t for t in ORDER if t in snapshot.types or t in proxy.acked]
    types += sorted(t for t in (*snapshot.types, *proxy.acked) if t not in types)
    expected = {t: snapshot.type_version(t) for t in dict.fromkeys(types)}
    return {
        "sync": {short_name(t): type_state(proxy, t, v) for t, v in expected.items()},
        "expected": {short_name(t): v for t, v in expected.items()},
        "problem": None,
    }


def overall(sync: Mapping[str, str], problem: str | None) -> str:
    """One word for a proxy: the worst of its types (NACKED > STALE > SYNCED)."""
    if problem is not None:
        return "UNKNOWN"
    states = set(sync.values()) - {NOT_SENT}
    for state in (NACKED, STALE):
        if state in states:
            return state
    return SYNCED if states else NOT_SENT
