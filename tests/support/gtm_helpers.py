"""GTM test helpers: MaxMind test databases and the two-region policy prefix."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet  # type: ignore[import-untyped]


def write_mmdb(path: Path, networks: Iterable[tuple[str, dict[str, Any]]]) -> Path:
    """A MaxMind-format database (IPv6 tree, IPv4 mapped) mapping each CIDR to its record."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="Ubiq-Test")
    for cidr, record in networks:
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return path


CLUSTER = """\
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {{name: {region}}}
spec: {{region: {region}}}
---
"""


def clusters(*regions: str) -> str:
    """One Cluster document per region (named as its region), each followed by ``---``."""
    return "".join(CLUSTER.format(region=region) for region in regions)


def format_escaped(text: str) -> str:
    """``text`` as the start of a ``str.format`` template (its braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


TWO_REGIONS = (
    format_escaped(clusters("eu-west", "us-west"))
    + """\
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: app}}
spec:
  ports: [{{port: 8080}}]
  endpoints:
  - {{cluster: eu-west, address: {eu}, port: {eu_port}}}
  - {{cluster: us-west, address: {us}, port: {us_port}}}
---
"""
)
"""Clusters eu-west and us-west and a Service ``app`` with one endpoint in each: prepend it to a
GlobalService document (a ``str.format`` template with ``eu``, ``us``, ``eu_port``, ``us_port``)."""
