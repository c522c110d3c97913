"""One decision, two consumers: for every service of every example, what DNS answers and what
Envoy holds come from the same placement Decision.

Each example (copied, its gateways moved to free ports with a real HTTP server behind each one
but the first, which stays down) runs under a real ``ubiq serve``; a real Envoy (a node of one
cluster) follows its xDS; with ``--prometheus`` a real Prometheus scrapes that Envoy. Then, from
one ``GET /v1/placement`` (re-read after the queries, so nothing moved in between):

- DNS (``dig`` with EDNS client subnet, for every client group of every GlobalService and for a
  client in no group): the GTM's choice for that group (shown in ``gtm``) was made from the
  Decision of the name's service (its ``madeAt``), and every answered region is one that choice
  names and that the Decision gives weight;
- Envoy (``/config_dump?include_eds``): for a service whose Decision Envoy follows (``xds``:
  loop-driven, with a feedback source), what xDS was given is that Decision's placement (handed
  from it or an earlier Decision with the same placement) and Envoy's priority-0 localities and
  their weights are exactly those; for any other service DNS answers, Envoy has a weighted
  locality with endpoints in every region DNS answers.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane.errors import UbiqError
from controlplane.policy.loader import load_directory
from controlplane.policy.model import Model
from controlplane.prometheus.config import envoy_job
from tests.support.backends import Backend
from tests.support.dns import dig
from tests.support.envoy import EnvoyProcess, envoy
from tests.support.poll import wait_until
from tests.support.procs import free_port, free_udp_tcp_port, running, wait_for_port
from tests.support.prometheus import prometheus

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "examples"
GATEWAY = re.compile(r"gateway: \{address: ([0-9.]+), port: (\d+)\}")
OUTSIDE = "100.64.0.0/24"  # in no client group: the default group


def loadable_examples() -> list[str]:
    """Every example directory that is a valid policy set (``bad`` is invalid on purpose)."""
    names = []
    for path in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
        try:
            load_directory(path)
        except UbiqError:
            continue
        names.append(path.name)
    return names


EXAMPLE_NAMES = loadable_examples()


def test_the_examples_this_test_covers() -> None:
    assert "three-regions" in EXAMPLE_NAMES
    assert "bad" not in EXAMPLE_NAMES


@contextmanager
def gateways(root: Path) -> Iterator[str | None]:
    """Every Cluster gateway moved to a free port with a real HTTP server on it, except the first
    (sorted by address), whose port is left closed: its region is down. Yields that address."""
    addresses = sorted(
        {m.group(1) for f in root.glob("*.yaml") for m in GATEWAY.finditer(f.read_text())}
    )
    with ExitStack() as stack:
        ports: dict[str, int] = {}
        for i, address in enumerate(addresses):
            if i == 0:
                ports[address] = free_port(address)  # nothing listens: connections are refused
                continue
            backend = Backend(f"gateway-{address}", host=address).start()
            ports[address] = backend.port
            stack.callback(backend.close)
        for f in root.glob("*.yaml"):
            text = f.read_text()
            moved = GATEWAY.sub(
                lambda m: f"gateway: {{address: {m.group(1)}, port: {ports[m.group(1)]}}}", text
            )
            if moved != text:
                f.write_text(moved)
        yield addresses[0] if addresses else None


def localities(proxy: EnvoyProcess) -> dict[str, list[dict[str, Any]]]:
    """Envoy cluster -> its ClusterLoadAssignment's localities, from a real Envoy."""
    dump = httpx.get(f"{proxy.admin}/config_dump", params={"include_eds": ""}, timeout=5).json()
    out: dict[str, list[dict[str, Any]]] = {}
    for config in dump.get("configs", []):
        for entry in config.get("dynamic_endpoint_configs", []):
            cla = entry.get("endpoint_config", {})
            out[cla.get("cluster_name", "")] = cla.get("endpoints", [])
    return out


def of_service(eds: dict[str, list[dict[str, Any]]], service: str) -> dict[str, list[Any]]:
    return {n: ls for n, ls in eds.items() if n == service or n.startswith(f"{service}|")}


def serving_weights(locs: list[dict[str, Any]]) -> dict[str, int]:
    """sub_zone (the Ubiq cluster) -> load_balancing_weight, at priority 0."""
    return {
        loc["locality"].get("sub_zone", ""): int(loc.get("load_balancing_weight", 1))
        for loc in locs
        if int(loc.get("priority", 0)) == 0
    }


def weighted_regions(locs: list[dict[str, Any]]) -> set[str]:
    return {
        loc["locality"].get("region", "")
        for loc in locs
        if int(loc.get("load_balancing_weight", 1)) > 0 and loc.get("lb_endpoints")
    }


def regions_by_address(model: Model) -> dict[str, str]:
    out = {}
    for gs in model.global_services.values():
        for t in gs.spec.targets:
            cluster = model.clusters[t.cluster].spec
            address = t.address or (cluster.gateway.address if cluster.gateway else None)
            if address:
                out[address] = cluster.region
    for cluster in model.clusters.values():
        if cluster.spec.gateway is not None:
            out.setdefault(cluster.spec.gateway.address, cluster.spec.region)
    return out


class Agreement:
    """The whole check against one /v1/placement snapshot; ``why`` says what disagreed last."""

    def __init__(self, model: Model, api: str, dns_port: int, proxy: EnvoyProcess) -> None:
        self.model, self.api, self.dns_port, self.proxy = model, api, dns_port, proxy
        self.region_of = regions_by_address(model)
        self.why = "not checked yet"
        self.checked: list[tuple[str, str, str]] = []  # (name, group, region) answered

    def placement(self) -> dict[str, Any]:
        reply = httpx.get(f"{self.api}/v1/placement", timeout=5)
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data

    def clients(self, spec: Any) -> list[tuple[str, str]]:
        """(group, subnet) for every client group of the GlobalService, and one in none."""
        return [(g.name, g.cidrs[0]) for g in spec.client_groups] + [("default", OUTSIDE)]

    def holds(self) -> bool:
        before = self.placement()
        eds = localities(self.proxy)
        answered: dict[tuple[str, str], set[str]] = {}
        for gs in self.model.global_services.values():
            name = gs.spec.name.rstrip(".").lower()
            for group, subnet in self.clients(gs.spec):
                got = dig("127.0.0.1", self.dns_port, name, "A", f"+subnet={subnet}")
                answered[(name, group)] = {self.region_of[a] for a in got.rdata("A")}
        after = self.placement()
        if after != before:  # the decisions moved while asking: ask again
            return False
        self.checked = []
        decisions = before["decisions"]
        for gs in self.model.global_services.values():
            name, service = gs.spec.name.rstrip(".").lower(), gs.spec.service
            decision = decisions.get(service)
            has_placement = self.model.placement_for(service) is not None
            if has_placement != (decision is not None):
                self.why = f"{service}: a Placement {has_placement}, a decision {decision}"
                return False
            for group, _ in self.clients(gs.spec):
                regions = answered[(name, group)]
                if not regions:
                    self.why = f"{name} for {group}: no answer"
                    return False
                if decision is not None:
                    weighted = {r for r, w in decision["weights"].items() if w > 0}
                    choice = before["gtm"][name][group]
                    if choice["decisionMadeAt"] != decision["madeAt"]:
                        self.why = f"{name}/{group}: the GTM used another decision: {choice}"
                        return False
                    named = [r["region"] for r in choice["regions"]]
                    if not regions <= weighted or not regions <= set(named):
                        self.why = (
                            f"{name}/{group}: DNS answered {regions}; the decision weights"
                            f" {decision['weights']}, its choice for the group {named}"
                        )
                        return False
                clusters = of_service(eds, service)
                if not clusters or not all(
                    regions <= weighted_regions(c) for c in clusters.values()
                ):
                    self.why = f"{name}/{group}: DNS answered {regions}; Envoy holds {clusters}"
                    return False
                self.checked += [(name, group, r) for r in regions]
        for service, given in before["xds"].items():
            decision = decisions[service]
            want = {p["cluster"]: p["weight"] for p in given["placed"] if p["weight"] > 0}
            decided = {p["cluster"]: p["weight"] for p in decision["placed"] if p["weight"] > 0}
            handed_at = given["decisionMadeAt"]
            if want != decided or handed_at is None or handed_at > decision["madeAt"]:
                self.why = f"{service}: xDS was given {given}; the decision places {decided}"
                return False
            clusters = of_service(eds, service)
            held = {n: serving_weights(c) for n, c in clusters.items()}
            if not clusters or any(w != want for w in held.values()):
                self.why = f"{service}: the decision places {want}; Envoy holds {held}"
                return False
        self.why = "agreed"
        return True


@pytest.mark.parametrize("measured", [False, True], ids=["static", "prometheus"])
@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_dns_and_envoy_follow_the_same_decision(
    tmp_path: Path, example: str, measured: bool
) -> None:
    root = tmp_path / "policies"
    shutil.copytree(EXAMPLES / example, root)
    dns_port, api_port, xds_port = free_udp_tcp_port(), free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    with ExitStack() as stack:
        down = stack.enter_context(gateways(root))
        model = load_directory(root)
        node = sorted(model.clusters)[-1]
        spec = model.clusters[node].spec
        proxy = stack.enter_context(
            envoy(
                tmp_path,
                xds_port=xds_port,
                cluster=node,
                region=spec.region,
                zone=spec.zone or "",
                node_id=f"agree-{node}",
            )
        )
        argv = [
            sys.executable, "-m", "controlplane.cli", "--log-format", "json", "serve", str(root),
            "--xds", f"127.0.0.1:{xds_port}", "--api", f"127.0.0.1:{api_port}",
            "--dns", f"127.0.0.1:{dns_port}",
        ]  # fmt: skip
        if measured:
            job = envoy_job({f"127.0.0.1:{proxy.admin_port}": (node, spec.region)})
            prom = stack.enter_context(prometheus(tmp_path, [job]))
            argv += ["--prometheus", prom.url, "--feedback-interval", "1"]
        stack.enter_context(running(argv, log=tmp_path / "ubiq.log"))
        wait_for_port("127.0.0.1", api_port, 20)

        if down is not None and model.global_services:
            down_region = regions_by_address(model)[down]

            def health_settled() -> bool:
                rows = httpx.get(f"{api}/v1/gtm/health", timeout=5).json()
                return bool(rows) and all(
                    r["healthy"] is (r["region"] != down_region) for r in rows
                )

            wait_until(health_settled, 20, f"the GTM seeing {down_region} down, the rest up")

        check = Agreement(model, api, dns_port, proxy)
        try:
            wait_until(check.holds, 30, "DNS and Envoy agreeing with one decision")
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"{exc}: {check.why}") from None
        placement = check.placement()
        assert placement["loop"] == ("on" if measured else "static")
        if model.global_services:
            assert check.checked, "no DNS answer was compared"
        if measured and any(model.placement_for(s) for s in model.services):
            assert placement["xds"], "no decision reached Envoy"
