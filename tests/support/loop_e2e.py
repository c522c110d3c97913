"""What the feedback-loop end-to-end tests read and drive on a live ``Mesh``: bounded background
traffic, the API's decisions and canaries, DNS answers per client subnet, the localities and
route weights a real Envoy holds (from its admin ``/config_dump``), Ubiq's own metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import dns.edns
import dns.message
import dns.query
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.mesh import GTM_NAME, Mesh

EUROPE = "203.0.113.0/24"  # the GTM client group answered from eu-west by its typed latency
AMERICA = "192.0.2.0/24"  # ... and from us-west


@contextmanager
def traffic(
    rig: Mesh, hosts: Sequence[str] = ("checkout.mesh.example",), path: str = "/api/cart"
) -> Iterator[None]:
    """Requests for every host through every gateway until the block ends (bounded: at most
    10,000 rounds, each request with a 5 s timeout), so Prometheus always has a fresh rate."""
    done = threading.Event()

    def run() -> None:
        clients = [
            httpx.Client(base_url=f"http://{address}:{port}", timeout=5)
            for address, port in rig.gateways.values()
        ]
        try:
            for _ in range(10_000):
                if done.is_set():
                    return
                for client in clients:
                    for host in hosts:
                        with suppress(httpx.HTTPError):
                            client.get(path, headers={"host": host})
                done.wait(0.02)
        finally:
            for client in clients:
                client.close()

    thread = threading.Thread(target=run, name="traffic", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(30)


def placement(rig: Mesh, service: str | None = None) -> dict[str, Any]:
    """``GET /v1/placement[/service]``."""
    path = f"/v1/placement/{service}" if service else "/v1/placement"
    reply = httpx.get(f"{rig.api}{path}", timeout=5)
    reply.raise_for_status()
    data: dict[str, Any] = reply.json()
    return data


def canary(rig: Mesh, name: str) -> dict[str, Any]:
    """One canary's status from ``GET /v1/canaries``."""
    reply = httpx.get(f"{rig.api}/v1/canaries", timeout=5)
    reply.raise_for_status()
    data: dict[str, Any] = reply.json()[name]
    return data


def answer(rig: Mesh, subnet: str) -> list[str]:
    """The GTM's A records for ``GTM_NAME`` asked with an ECS option for ``subnet``."""
    host, port = rig.dns
    query = dns.message.make_query(
        GTM_NAME, "A", use_edns=0, options=[dns.edns.ECSOption.from_text(subnet)]
    )
    response = dns.query.udp(query, host, port=port, timeout=2)
    return sorted(str(rr) for rrset in response.answer for rr in rrset)


def _config_dump(admin_port: int, query: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"http://127.0.0.1:{admin_port}/config_dump?{query}", timeout=5)
    reply.raise_for_status()
    configs: list[dict[str, Any]] = reply.json().get("configs", [])
    return configs


def localities(admin_port: int, service: str) -> dict[str, dict[str, tuple[int, int]]]:
    """Envoy cluster of ``service`` (every subset) -> region -> (priority, locality weight), as
    the Envoy holds them from EDS."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for config in _config_dump(admin_port, "include_eds"):
        for entry in config.get("dynamic_endpoint_configs", []):
            cla = entry.get("endpoint_config", {})
            name = str(cla.get("cluster_name", ""))
            if name != service and not name.startswith(f"{service}|"):
                continue
            out[name] = {
                str(group.get("locality", {}).get("region", "")): (
                    int(group.get("priority", 0)),
                    int(group.get("load_balancing_weight", 0)),
                )
                for group in cla.get("endpoints", [])
            }
    return out


def serving_regions(admin_port: int, service: str) -> set[frozenset[str]]:
    """For each Envoy cluster of ``service``: the regions at priority 0 with a weight (one set
    when every subset agrees, which a placement decision makes them do)."""
    return {
        frozenset(r for r, (priority, weight) in regions.items() if priority == 0 and weight > 0)
        for regions in localities(admin_port, service).values()
    }


def route_split(admin_port: int, host: str) -> list[int]:
    """The weights of the first weighted-cluster route of ``host``'s virtual host."""
    for config in _config_dump(admin_port, "resource=dynamic_route_configs"):
        for vhost in config.get("route_config", {}).get("virtual_hosts", []):
            if host not in vhost.get("domains", []):
                continue
            for route in vhost.get("routes", []):
                clusters = route.get("route", {}).get("weighted_clusters", {}).get("clusters", [])
                if clusters:
                    return [int(c.get("weight", 0)) for c in clusters]
    return []


def ubiq_metric(rig: Mesh, name: str, labels: dict[str, str] | None = None) -> float | None:
    """A sample of Ubiq's own ``/metrics`` (read over HTTP, as a scraper would)."""
    text = httpx.get(f"{rig.api}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in (labels or {}).items()
            ):
                return float(sample.value)
    return None
