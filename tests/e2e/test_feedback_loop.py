"""The feedback loop closed end to end: real Envoys, real backends, a real Prometheus scraping
every second, Ubiq with ``--prometheus``. A region whose backends start failing is left by the
one placement decision, and both consumers follow it: the Envoys stop sending it traffic and DNS
stops answering it. Healed, it comes back after the dwell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import ubiq
from tests.support.dashboards import prove_annotation
from tests.support.loop_e2e import AMERICA, answer, placement, traffic
from tests.support.mesh import Mesh, mesh
from tests.support.poll import wait_until

pytestmark = pytest.mark.integration

PLACEMENT = """\
apiVersion: ubiq.io/v1alpha1
kind: Placement
metadata: {name: checkout}
spec:
  service: checkout
  strategy:
    type: static
    slo: {successRate: 0.95}
    hysteresis: {minDwell: 3s}
    damping: {minRequests: 5, stepInterval: 1s, maxWeightChangePercent: 50}
---
apiVersion: ubiq.io/v1alpha1
kind: Canary
metadata: {name: checkout-v2}
spec: {service: checkout, routePolicy: checkout, stableSubset: v1, canarySubset: v2,
       steps: [20, 50, 100], interval: 10m}
"""


def us_west_requests(rig: Mesh) -> int:
    return sum(b.count for n, b in rig.backends.items() if n.startswith("checkout_us"))


def test_a_failing_region_is_left_by_envoy_and_dns_and_comes_back(tmp_path: Path) -> None:
    with mesh(tmp_path, feedback=True, extra_policy=PLACEMENT) as rig, traffic(rig):
        us_gateway = rig.gateways["us-west"][0]
        eu_gateway = rig.gateways["eu-west"][0]
        wait_until(lambda: answer(rig, AMERICA) == [us_gateway], 30, "america answered by us-west")
        wait_until(
            lambda: placement(rig, "checkout")["signalsAt"] is not None,
            30,
            "the loop's first fresh signals",
        )
        assert placement(rig, "checkout")["weights"].get("us-west", 0) > 0

        # the same decision as `ubiq placement` shows it
        shown = ubiq("placement", "checkout", "--api", rig.api)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("checkout (static): ")

        for name, backend in rig.backends.items():
            if name.startswith("checkout_us"):
                backend.fail_ratio = 0.3

        wait_until(
            lambda: placement(rig, "checkout")["weights"] == {"eu-west": 100},
            30,
            "the decision to leave us-west (success rate under the 0.95 SLO)",
        )
        decision = placement(rig, "checkout")
        assert decision["reason"]["rule"], decision
        us = next(r for r in decision["regions"] if r["region"] == "us-west")
        assert us["successRate"] is not None and us["successRate"] < 0.95, us
        # the Placement dashboard's decision annotation marks it, naming the clusters it moved
        assert rig.prom is not None
        marks = prove_annotation(rig.prom, "Placement decisions")
        assert {m["metric"]["service"] for m in marks} == {"checkout"}, marks

        # DNS follows the same decision: america is answered from eu-west now, though every
        # gateway still passes its health check
        wait_until(lambda: answer(rig, AMERICA) == [eu_gateway], 15, "DNS leaving us-west")
        # Envoy follows it too: through the us-west gateway, nothing reaches us-west's backends
        wait_until(
            lambda: _no_new_requests(rig, us_west_requests), 15, "Envoy sending us-west nothing"
        )

        for name, backend in rig.backends.items():
            if name.startswith("checkout_us"):
                backend.fail_ratio = 0.0
        wait_until(
            lambda: placement(rig, "checkout")["weights"].get("us-west", 0) > 0,
            60,
            "us-west weighted again after the dwell",
        )
        wait_until(lambda: answer(rig, AMERICA) == [us_gateway], 30, "DNS back on us-west")
        shown = ubiq("placement", "--api", rig.api)
        assert shown.returncode == 0 and shown.stdout.startswith("signals: fresh"), shown.stdout


def test_canary_commands_reach_the_served_routes(tmp_path: Path) -> None:
    """The canary's first step is what Envoy routes by; pause, resume and abort work from the
    CLI, a command the phase does not allow is one error line, and abort puts stable at 100 %."""
    with mesh(tmp_path, feedback=True, extra_policy=PLACEMENT, api_token=True) as rig:
        auth = ("--token-file", str(rig.token_file))
        wait_until(lambda: split_weights(rig) == [80, 20], 30, "Envoy routing the first step")
        status = ubiq("canary", "status", "checkout-v2", "--api", rig.api, *auth)
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith("checkout-v2: progressing, step 0, canary weight 20%")

        assert "paused" in ubiq("canary", "pause", "checkout-v2", "--api", rig.api, *auth).stdout
        again = ubiq("canary", "pause", "checkout-v2", "--api", rig.api, *auth)
        assert again.returncode == 1
        assert again.stderr.strip().splitlines() == [
            f"ubiq: error: {rig.api}/v1/canaries/checkout-v2/pause: HTTP 409: canary checkout-v2"
            " is paused; only a progressing canary pauses"
        ]
        assert (
            "progressing" in ubiq("canary", "resume", "checkout-v2", "--api", rig.api, *auth).stdout
        )
        assert "aborted" in ubiq("canary", "abort", "checkout-v2", "--api", rig.api, *auth).stdout
        wait_until(lambda: split_weights(rig) == [100, 0], 30, "Envoy routing stable only")
        assert ubiq("canary", "pause", "nope", "--api", rig.api, *auth).returncode == 1
        # without a token, a command is refused and nothing changes
        refused = ubiq("canary", "pause", "checkout-v2", "--api", rig.api)
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr
        assert "aborted" in ubiq("canary", "status", "checkout-v2", "--api", rig.api, *auth).stdout


def split_weights(rig: Mesh) -> list[int]:
    """The weights of the `api` rule's two clusters in the eu-west Envoy's route table."""
    address = rig.envoys[0].admin_port
    dump = httpx.get(
        f"http://127.0.0.1:{address}/config_dump?resource=dynamic_route_configs", timeout=5
    )
    for config in dump.json().get("configs", []):
        for host in config.get("route_config", {}).get("virtual_hosts", []):
            for route in host.get("routes", []):
                clusters = route.get("route", {}).get("weighted_clusters", {}).get("clusters", [])
                if route.get("name", "").endswith("api") and clusters:
                    return [int(c.get("weight", 0)) for c in clusters]
    return []


def _no_new_requests(rig: Mesh, count: Any) -> bool:
    """Fifty requests through the us-west gateway, none of them served by us-west."""
    before = count(rig)
    address, port = rig.gateways["us-west"]
    with httpx.Client(base_url=f"http://{address}:{port}", timeout=5) as client:
        for _ in range(50):
            client.get("/api/cart", headers={"host": "checkout.mesh.example"})
    return bool(count(rig) == before)
