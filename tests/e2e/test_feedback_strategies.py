"""Metric-driven strategies end to end: real Envoys, real backends that are told to be slow, a
real Prometheus scraping every second, Ubiq with ``--prometheus``. One rig for the module:
``checkout`` is placed by ``lowestLatency`` (and is the GTM's service), ``catalog`` by
``lowestCost`` under a p99 SLO; each test writes its own Placement and slows only its own
service's backends.

- lowestLatency: the region serving checkout gets slow -> the decision, every Envoy's locality
  weights and the DNS answers of both client groups move to the other region.
- lowestCost: catalog stays on the cheap region while it is slower (+100 ms) than the other but
  within its p99 SLO (400 ms), and leaves it when the SLO breaks (+600 ms).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.loop_e2e import AMERICA, EUROPE, answer, placement, serving_regions, traffic
from tests.support.mesh import REGIONS, Mesh, mesh
from tests.support.poll import wait_until

pytestmark = pytest.mark.integration

LOWEST_LATENCY = """\
apiVersion: ubiq.io/v1alpha1
kind: Placement
metadata: {name: checkout}
spec:
  service: checkout
  strategy:
    type: lowestLatency
    hysteresis: {minDwell: 3s}
    damping: {minRequests: 5, stepInterval: 1s, maxWeightChangePercent: 100}
"""
LOWEST_COST = """\
apiVersion: ubiq.io/v1alpha1
kind: Placement
metadata: {name: catalog}
spec:
  service: catalog
  strategy:
    type: lowestCost
    slo: {latencyP99: 400ms}
    hysteresis: {minDwell: 3s}
    damping: {minRequests: 5, stepInterval: 1s, maxWeightChangePercent: 100}
"""
BOTH = (("checkout.mesh.example", "/api/cart"), ("catalog.mesh.example", "/"))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    # eu-west is the cheap region
    with mesh(tmp_path_factory.mktemp("strategies"), feedback=True, costs=(1.0, 3.0)) as live:
        yield live


def measured_everywhere(rig: Mesh, service: str) -> bool:
    """The poller's last signals carry a p99 and some volume for ``service`` in every region."""
    assert rig.ubiq.poller is not None
    last = rig.ubiq.poller.last
    if last is None or last.stale:
        return False
    for region in REGIONS:
        value = last.get(service, region)
        if value is None or value.latency_p99_ms is None or not (value.requests or 0) >= 5:
            return False
    return True


def envoys_serve(rig: Mesh, service: str, region: str) -> bool:
    return all(serving_regions(e.admin_port, service) == {frozenset({region})} for e in rig.envoys)


def region_row(decision: dict[str, object], region: str) -> dict[str, object]:
    rows = decision["regions"]
    assert isinstance(rows, list)
    row: dict[str, object] = next(r for r in rows if r["region"] == region)
    return row


def test_lowest_latency_moves_envoy_weights_and_dns_to_the_next_region(rig: Mesh) -> None:
    with traffic(rig, [h for h, _ in BOTH[:1]]):
        # static placement until now: each Envoy serves its own region, so both are measured
        wait_until(lambda: measured_everywhere(rig, "checkout"), 30, "checkout measured in both")
        (rig.root / "placement-checkout.yaml").write_text(LOWEST_LATENCY)
        wait_until(
            lambda: len(placement(rig, "checkout").get("weights", {})) == 1,
            30,
            "a lowestLatency decision for checkout (one region)",
        )
        first = placement(rig, "checkout")
        assert first["strategy"] == "lowestLatency", first
        fast = next(iter(first["weights"]))
        slow_next = next(r for r in REGIONS if r != fast)
        gateway = {region: rig.gateways[region][0] for region in REGIONS}
        wait_until(lambda: envoys_serve(rig, "checkout", fast), 15, f"Envoys serving {fast}")
        # DNS follows: the other region is left out of the answers, for both client groups
        wait_until(
            lambda: answer(rig, EUROPE) == answer(rig, AMERICA) == [gateway[fast]],
            15,
            f"DNS answering {fast} for every client group",
        )

        prefix = "checkout_eu" if fast == "eu-west" else "checkout_us"
        for name, backend in rig.backends.items():
            if name.startswith(prefix):
                backend.delay = 0.15
        try:
            wait_until(
                lambda: placement(rig, "checkout")["weights"] == {slow_next: 100},
                40,
                f"the decision moving checkout from the slow {fast} to {slow_next}",
            )
            moved = placement(rig, "checkout")
            assert moved["reason"]["rule"] in ("lowestLatency", "step"), moved["reason"]
            slow_ms, next_ms = (region_row(moved, r)["latencyMs"] for r in (fast, slow_next))
            # the decision records the measured inputs it moved on (which is faster is the
            # decision's job, shown by the move itself; no latency comparison here)
            assert isinstance(slow_ms, float) and isinstance(next_ms, float), moved
            wait_until(
                lambda: envoys_serve(rig, "checkout", slow_next),
                15,
                f"every Envoy's locality weights on {slow_next}",
            )
            wait_until(
                lambda: answer(rig, EUROPE) == answer(rig, AMERICA) == [gateway[slow_next]],
                15,
                f"DNS answering {slow_next} for every client group",
            )
        finally:
            for backend in rig.backends.values():
                backend.delay = 0.0


def test_lowest_cost_stays_on_the_cheap_region_while_its_slo_holds(rig: Mesh) -> None:
    with traffic(rig, [BOTH[1][0]], path="/"):
        wait_until(lambda: measured_everywhere(rig, "catalog"), 30, "catalog measured in both")
        (rig.root / "placement-catalog.yaml").write_text(LOWEST_COST)
        wait_until(
            lambda: placement(rig, "catalog").get("weights") == {"eu-west": 100},
            30,
            "lowestCost placing catalog on the cheap eu-west",
        )
        wait_until(lambda: envoys_serve(rig, "catalog", "eu-west"), 15, "Envoys serving eu-west")

        # slower than us-west, still well within the 400 ms p99 SLO (margin for a loaded machine):
        # the cheap region keeps it
        rig.backends["catalog_eu"].delay = 0.1
        try:
            slow_seen = [0.0]

            def slow_seen_and_held() -> bool:
                decision = placement(rig, "catalog")
                latency = region_row(decision, "eu-west")["latencyMs"]
                if not isinstance(latency, float) or latency < 80.0:
                    return False
                slow_seen[0] = slow_seen[0] or float(decision["signalsAt"])
                # held through more than one dwell of fresh signals after the slowness showed
                return float(decision["signalsAt"]) > slow_seen[0] + 4.0

            wait_until(slow_seen_and_held, 40, "eu-west's higher p99 seen for over a dwell")
            held = placement(rig, "catalog")
            assert held["weights"] == {"eu-west": 100}, held
            assert region_row(held, "eu-west")["verdict"] == "serving", held
            us_latency = region_row(held, "us-west")["latencyMs"]
            eu_latency = region_row(held, "eu-west")["latencyMs"]
            assert isinstance(us_latency, float) and isinstance(eu_latency, float), held
            assert us_latency < eu_latency, held  # us-west is faster, and more expensive
            assert envoys_serve(rig, "catalog", "eu-west")

            # over the SLO: leave the cheap region
            rig.backends["catalog_eu"].delay = 0.6
            wait_until(
                lambda: placement(rig, "catalog")["weights"] == {"us-west": 100},
                40,
                "lowestCost leaving eu-west over its p99 SLO",
            )
            left = placement(rig, "catalog")
            assert region_row(left, "eu-west")["verdict"] == "overLatencySlo", left
            wait_until(
                lambda: envoys_serve(rig, "catalog", "us-west"),
                15,
                "every Envoy's locality weights on us-west",
            )
        finally:
            rig.backends["catalog_eu"].delay = 0.0
