"""examples/three-regions-loop (what `make demo` runs) is examples/three-regions with the loop's
two changes: an SLO Placement and a fast Canary; every other file is the same."""

from __future__ import annotations

from pathlib import Path

from controlplane.policy.loader import load_directory

EXAMPLES = Path(__file__).parents[2] / "examples"
LOOP, BASE = EXAMPLES / "three-regions-loop", EXAMPLES / "three-regions"


def test_the_loop_example_differs_only_in_placement_and_canary() -> None:
    for name in ("clusters.yaml", "routes.yaml", "services.yaml", "traffic.yaml"):
        assert (LOOP / name).read_text() == (BASE / name).read_text(), name
    assert sorted(p.name for p in LOOP.glob("*.yaml")) == sorted(
        p.name for p in BASE.glob("*.yaml")
    )
    loop, base = load_directory(LOOP), load_directory(BASE)
    assert loop.global_services == base.global_services
    assert loop.placements["checkout"].spec.strategy.slo is not None
    canary = loop.canaries["checkout-v2"].spec
    assert canary.interval == 5_000 and canary.steps == base.canaries["checkout-v2"].spec.steps
