"""The one policy-YAML builder (``doc``, ``cluster``, ``join``), a small base policy set, and
helpers to load sets and read their problems."""

from __future__ import annotations

import textwrap

import pytest

from controlplane.errors import PolicyError
from controlplane.policy.loader import load_texts
from controlplane.policy.model import Model

BASE = """\
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: eu-west}
spec: {region: eu-west, labels: {tier: primary}, gateway: {address: 127.0.0.12}}
---
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: us-west}
spec:
  region: us-west
  labels: {tier: primary}
  taints: [{key: maintenance, effect: NoSchedule}]
  gateway: {address: 127.0.0.13}
---
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 8080}]
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
  endpoints:
  - {cluster: eu-west, address: 127.0.1.1, labels: {version: v1}}
  - {cluster: us-west, address: 127.0.1.2, labels: {version: v2}}
"""


def load(*extra: str, base: str = BASE) -> Model:
    texts = [("base.yaml", base)] + [
        (f"extra{i}.yaml", textwrap.dedent(t)) for i, t in enumerate(extra)
    ]
    return load_texts(texts)


def problems(*extra: str, base: str = BASE) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load(*extra, base=base)
    return [str(p) for p in info.value.problems]


def doc(kind: str, name: str, spec: str) -> str:
    """One document; ``spec`` is YAML indented as a block under ``spec:``."""
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return (
        f"apiVersion: ubiq.io/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n{body}\n"
    )


def cluster(name: str, zone: str | None = None, region: str | None = None) -> str:
    """A Cluster document; its region is its name unless given."""
    where = f"region: {region or name}" + (f", zone: {zone}" if zone else "")
    return doc("Cluster", name, f"{{{where}}}")


#: one gRPC port, as a Service's ``ports``
GRPC_PORT = "[{name: grpc, port: 9000, protocol: GRPC}]"


def service(name: str, ports: str, endpoints: str, extra: str = "") -> str:
    """A Service document: ``ports`` and ``endpoints`` are YAML flow sequences."""
    return doc("Service", name, f"ports: {ports}\nendpoints: {endpoints}\n{extra}")


def route(name: str, host: str, to: str, prefix: str = "/") -> str:
    """A RoutePolicy sending every request under ``prefix`` at ``host`` to Service ``to``."""
    match = f"[{{path: {{prefix: {prefix}}}}}]"
    return doc(
        "RoutePolicy",
        name,
        f"hosts: [{host}]\nhttp: [{{match: {match}, route: [{{service: {to}}}]}}]",
    )


def join(*docs: str) -> str:
    """Documents as one multi-document YAML text."""
    return "---\n".join(docs)
