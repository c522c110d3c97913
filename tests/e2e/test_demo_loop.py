"""`ubiq demo examples/three-regions-loop --loop` (what `make demo` runs): Prometheus starts before
Ubiq and is its feedback source; under the demo's traffic the canary steps through every weight
to promotion, the placement decisions are shown from fresh signals, the stopped gateway's region
is left by every decision and weighted again once it is back, and the demo exits cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.demo import where_to_look

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions-loop"


def test_make_demo_shows_the_canary_progressing_and_placement() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "--log-level", "warning", "demo", str(EXAMPLE),
         "--loop"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    lines = text.splitlines()
    # Prometheus first, then Ubiq told its URL
    prom = next(i for i, line in enumerate(lines) if line.startswith("Prometheus on http://"))
    ubiq = next(i for i, line in enumerate(lines) if ", feedback loop on http://" in line)
    assert prom < ubiq
    for number, weight in ((2, 25), (3, 50), (4, 100)):  # every step, in order
        assert f"checkout-v2: step {number} of 4: canary at {weight}%" in text
    assert "checkout-v2: promoted: canary v2 at 100%" in text
    assert "checkout-v2: promoted, step 4, canary weight 100%" in text  # `ubiq canary status`
    shown = text[text.index("$ ubiq placement --api") :]
    assert shown.splitlines()[1].startswith("signals: fresh"), shown
    assert "checkout (failover): eu-west 50%, us-west 50%" in shown
    after = text[text.index("placement decisions now") :].splitlines()
    checkout = next(line for line in after if line.startswith("checkout (failover): "))
    # eu-west left at once; cn-east (next in order) comes in at the paced step, us-west holds the rest
    assert "eu-west" not in checkout and "us-west" in checkout, after[:8]
    back = text[text.index("weighted again after") :].splitlines()
    checkout = next(line for line in back if line.startswith("checkout (failover): "))
    assert "eu-west" in checkout, back[:8]  # healthy again: back after the dwell
    # `make demo` ends by saying where the API, its token, Prometheus and the dashboards are
    places = where_to_look(text)
    api = next(line for line in lines if ", API on http://" in line).split(", API on ")[1]
    assert places["API"] == api
    token = next(line for line in lines if line.startswith("API token (scopes read,write): "))
    assert places["API token"] == token.split(": ", 1)[1]
    assert lines[prom].startswith(f"Prometheus on {places['Prometheus']} ")
    assert places["Dashboards"].endswith("grafana-dashboards")
    assert "make demo DEMO_ARGS=--keep-running" in text[text.index("== where to look") :]
    assert "demo finished" in text
