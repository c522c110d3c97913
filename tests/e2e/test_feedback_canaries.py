"""Canaries and a lost Prometheus, end to end: real Envoys, real backends, a real Prometheus
scraping every second, Ubiq with ``--prometheus``. One rig for the module, three canaries on
three services, so each test watches its own:

- ``checkout-v2`` (healthy) is promoted through every step, and Envoy then sends v1 nothing;
- ``payments-v2`` (its v2 answers half its requests with 503) is rolled back and v1 gets 100 %;
- ``orders-v2`` gets no traffic: its analyses are inconclusive and hold the step, never a failure.

The last test stops Prometheus under the running loop: decisions hold (Envoy keeps its locality
weights though a region starts failing), the API, ``ubiq placement`` and the poller's metrics
say stale; started again, the signals are fresh and the loop acts on what it missed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.cli import ubiq
from tests.support.dashboards import prove_annotation
from tests.support.loop_e2e import canary, placement, serving_regions, traffic, ubiq_metric
from tests.support.mesh import REGIONS, Mesh, mesh
from tests.support.poll import wait_until

pytestmark = pytest.mark.integration

EXTRA = ("payments_v1", "payments_v2", "orders_v1", "orders_v2")

SERVICE = """\
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: {name}}}
spec:
  ports: [{{name: http, port: 8080, protocol: HTTP}}]
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
  endpoints:
  - {{cluster: eu-west, address: 127.0.0.1, port: {v1}, labels: {{version: v1}}}}
  - {{cluster: eu-west, address: 127.0.0.1, port: {v2}, labels: {{version: v2}}}}
---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {{name: {name}}}
spec:
  hosts: [{name}.mesh.example]
  http:
  - route:
    - {{service: {name}, subset: v1, weight: 100}}
    - {{service: {name}, subset: v2, weight: 0}}
---
"""
CANARIES = """\
apiVersion: ubiq.io/v1alpha1
kind: Canary
metadata: {name: checkout-v2}
spec: {service: checkout, routePolicy: checkout, stableSubset: v1, canarySubset: v2,
       steps: [20, 50, 100], interval: 2s, analysis: {minRequests: 10, minSuccessRate: 0.95}}
---
apiVersion: ubiq.io/v1alpha1
kind: Canary
metadata: {name: payments-v2}
spec: {service: payments, routePolicy: payments, stableSubset: v1, canarySubset: v2,
       steps: [20, 50, 100], interval: 2s, analysis: {minRequests: 10, minSuccessRate: 0.95}}
---
apiVersion: ubiq.io/v1alpha1
kind: Canary
metadata: {name: orders-v2}
spec: {service: orders, routePolicy: orders, stableSubset: v1, canarySubset: v2,
       steps: [20, 50, 100], interval: 1s, analysis: {minRequests: 10}}
---
apiVersion: ubiq.io/v1alpha1
kind: Placement
metadata: {name: catalog}
spec:
  service: catalog
  strategy:
    type: static
    slo: {successRate: 0.95}
    hysteresis: {minDwell: 3s}
    damping: {minRequests: 5, stepInterval: 1s, maxWeightChangePercent: 100}
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = tmp_path_factory.mktemp("canaries")
    with mesh(workdir, feedback=True, extra_backends=EXTRA) as live:
        live.backends["payments_v2"].fail_ratio = 0.5
        ports = {name: b.port for name, b in live.backends.items()}
        services = "".join(
            SERVICE.format(name=name, v1=ports[f"{name}_v1"], v2=ports[f"{name}_v2"])
            for name in ("payments", "orders")
        )
        (live.root / "canaries.yaml").write_text(services + CANARIES)
        wait_until(
            lambda: (
                {"checkout-v2", "payments-v2", "orders-v2"}
                <= set(httpx.get(f"{live.api}/v1/canaries", timeout=5).json())
            ),
            30,
            "the three canaries started",
        )
        yield live


def served_by(rig: Mesh, host: str, requests: int = 40) -> Counter[str]:
    """Which backends answered ``requests`` requests for ``host`` through the eu-west gateway."""
    address, port = rig.gateways["eu-west"]
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=f"http://{address}:{port}", timeout=5) as client:
        for _ in range(requests):
            seen[client.get("/", headers={"host": host}).headers.get("x-backend", "none")] += 1
    return seen


def kinds(status: dict[str, Any]) -> list[str]:
    return [str(e["kind"]) for e in status["events"]]


def test_a_healthy_canary_is_promoted_through_every_step(rig: Mesh) -> None:
    with traffic(rig, ["checkout.mesh.example"]):
        wait_until(
            lambda: canary(rig, "checkout-v2")["phase"] == "promoted", 60, "checkout-v2 promoted"
        )
    status = canary(rig, "checkout-v2")
    assert status["weight"] == 100 and status["stableWeight"] == 0, status
    steps = [e["message"] for e in status["events"] if e["kind"] == "step"]
    assert steps == ["step 2 of 3: canary at 50%", "step 3 of 3: canary at 100%"], steps
    assert kinds(status).count("analysis.pass") == 3, kinds(status)
    assert "analysis.fail" not in kinds(status)
    # the Placement dashboard's "Canary steps" annotation marks the steps, naming the canary
    assert rig.prom is not None
    marks = prove_annotation(rig.prom, "Canary steps", canary="checkout-v2")
    assert {m["metric"]["canary"] for m in marks} == {"checkout-v2"}, marks
    # Envoy routes by the promoted weights: the stable subset gets nothing
    wait_until(
        lambda: set(served_by(rig, "checkout.mesh.example")) <= {"checkout_eu_v2"},
        15,
        "the eu-west Envoy sending checkout only to v2",
    )


def test_a_failing_canary_is_rolled_back_and_stable_gets_everything(rig: Mesh) -> None:
    with traffic(rig, ["payments.mesh.example"], path="/"):
        wait_until(
            lambda: canary(rig, "payments-v2")["phase"] == "rolledBack",
            60,
            "payments-v2 rolled back",
        )
    status = canary(rig, "payments-v2")
    assert status["weight"] == 0 and status["stableWeight"] == 100, status
    assert "analysis.fail" in kinds(status) and kinds(status)[-1] == "rolledBack", kinds(status)
    failed = next(c for c in status["checks"] if c["metric"] == "successRate")
    assert failed["ok"] is False and failed["value"] < 0.95, status["checks"]
    wait_until(
        lambda: set(served_by(rig, "payments.mesh.example")) == {"payments_v1"},
        15,
        "the eu-west Envoy sending payments only to v1",
    )


def test_a_canary_without_traffic_is_inconclusive_not_failed(rig: Mesh) -> None:
    # the positive event: two analyses have run (and found too few requests)
    wait_until(lambda: canary(rig, "orders-v2")["inconclusive"] >= 2, 30, "two orders-v2 analyses")
    status = canary(rig, "orders-v2")
    assert status["phase"] == "progressing" and status["step"] == 0, status
    assert status["weight"] == 20 and status["failures"] == 0, status
    assert status["outcome"] == "inconclusive", status
    assert "analysis.fail" not in kinds(status), kinds(status)
    assert "fewer than minRequests 10" in status["why"], status["why"]
    shown = ubiq("canary", "status", "orders-v2", "--api", rig.api)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("orders-v2: progressing, step 0, canary weight 20%"), shown


def test_prometheus_lost_holds_decisions_and_says_stale_until_it_is_back(rig: Mesh) -> None:
    both = frozenset(REGIONS)

    def envoys_serve(regions: frozenset[str]) -> bool:
        return all(serving_regions(e.admin_port, "catalog") == {regions} for e in rig.envoys)

    with traffic(rig, ["catalog.mesh.example"], path="/"):
        wait_until(
            lambda: (
                placement(rig)["signals"]["stale"] is False
                and set(placement(rig, "catalog")["weights"]) == both
            ),
            30,
            "fresh signals and catalog served from both regions",
        )
        wait_until(lambda: envoys_serve(both), 15, "every Envoy weighting both regions")
        weights = placement(rig, "catalog")["weights"]

        assert rig.prom is not None
        rig.prom.stop()
        try:
            wait_until(lambda: placement(rig)["signals"]["stale"] is True, 15, "signals stale")
            shown = ubiq("placement", "--api", rig.api)
            assert shown.returncode == 0 and shown.stdout.startswith("signals: STALE"), shown
            assert ubiq_metric(rig, "ubiq_feedback_stale") == 1.0

            # us-west starts failing; with no signals the loop cannot see it, and must hold
            failing = rig.backends["catalog_us"]
            failing.fail_ratio = 0.5
            errors, served = ubiq_metric(rig, "ubiq_feedback_poll_errors_total"), failing.count
            assert errors is not None and errors >= 1
            wait_until(
                lambda: (
                    (ubiq_metric(rig, "ubiq_feedback_poll_errors_total") or 0) >= errors + 3
                    and failing.count >= served + 50
                ),
                30,
                "three more stale polls while us-west answered 50 failing-prone requests",
            )
            assert placement(rig, "catalog")["weights"] == weights
            assert placement(rig, "catalog")["reason"]["rule"] == "hold.stale"
            assert envoys_serve(both)  # Envoy's locality weights did not move
        finally:
            rig.restart_prometheus()

        wait_until(lambda: placement(rig)["signals"]["stale"] is False, 30, "signals fresh again")
        shown = ubiq("placement", "--api", rig.api)
        assert shown.returncode == 0 and shown.stdout.startswith("signals: fresh"), shown
        assert ubiq_metric(rig, "ubiq_feedback_stale") == 0.0
        try:
            # the loop resumed: it now sees us-west under its SLO and leaves it
            wait_until(
                lambda: placement(rig, "catalog")["weights"] == {"eu-west": 100},
                30,
                "catalog leaving the failing us-west once signals are back",
            )
            wait_until(lambda: envoys_serve(frozenset({"eu-west"})), 15, "Envoys on eu-west")
        finally:
            failing.fail_ratio = 0.0
