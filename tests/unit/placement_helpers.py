"""A four-region policy set and signal builders for placement and canary unit tests."""

from __future__ import annotations

from controlplane.feedback.signals import RegionSignal, SignalKey, Signals
from controlplane.policy.model import Model
from tests.support.policy import doc, load

REGIONS = ("ra", "rb", "rc", "rd")

BASE = """\
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: a}
spec: {region: ra, costWeight: 1, labels: {tier: primary}, capacity: {requestsPerSecond: 100}}
---
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: b}
spec: {region: rb, costWeight: 2, labels: {tier: primary}, capacity: {requestsPerSecond: 300}}
---
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: c}
spec: {region: rc, costWeight: 3, labels: {tier: edge}}
---
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: d}
spec:
  region: rd
  costWeight: 0.5
  labels: {tier: primary}
  taints: [{key: maintenance, effect: NoSchedule}]
---
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 8080}]
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
  endpoints:
  - {cluster: a, address: 127.0.1.1, labels: {version: v1}}
  - {cluster: a, address: 127.0.1.5, labels: {version: v2}}
  - {cluster: b, address: 127.0.1.2, labels: {version: v1}}
  - {cluster: c, address: 127.0.1.3, labels: {version: v1}}
  - {cluster: d, address: 127.0.1.4, labels: {version: v1}}
"""


def model(placement: str | None = None, *extra: str) -> Model:
    docs = [doc("Placement", "web", "service: web\n" + placement)] if placement else []
    return load(*docs, *extra, base=BASE)


def signals(
    at: float,
    regions: dict[str, tuple[float | None, float | None]] | None = None,
    *,
    requests: float = 100.0,
    service: str = "web",
    subset: str = "",
    stale: bool = False,
    client: dict[tuple[str, str], float] | None = None,
) -> Signals:
    """``regions``: region -> (success rate, p99 ms)."""
    values = {
        SignalKey(service, r, subset): RegionSignal(
            requests=requests,
            request_rate=requests / 10,
            success_rate=s,
            latency_p99_ms=p99,
            latency_p50_ms=p99 / 2 if p99 is not None else None,
        )
        for r, (s, p99) in (regions or {}).items()
    }
    return Signals(at=at, values=values, stale=stale, client_latency_ms=client or {})
