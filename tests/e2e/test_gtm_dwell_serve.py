"""`ubiq serve`: a lowestLatency answer held by a minimum dwell moves when the dwell ends.

The better region (us-west) is down at start, so the placement Decision serves eu-west alone and
the america group is answered eu-west. When us-west turns healthy inside the dwell, the Decision
holds eu-west (its minimum dwell), and with nothing else changing, the placement step decides
again when the dwell ends, the GTM follows and america moves to us-west.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.test_gtm_serve import Backend
from tests.support.dns import dig
from tests.support.gtm_helpers import TWO_REGIONS
from tests.support.poll import wait_until as wait_for
from tests.support.procs import free_port, free_udp_tcp_port, running, wait_for_port

NAME = "near.gtm.example"
EU, US = "127.0.0.41", "127.0.0.42"
AMERICA = "127.0.30.0/24"
DWELL_S = 3

POLICY = (
    TWO_REGIONS
    + """\
apiVersion: ubiq.io/v1alpha1
kind: Placement
metadata: {{name: app}}
spec:
  service: app
  strategy: {{type: lowestLatency, hysteresis: {{minDwell: {dwell}s, thresholdPercent: 10}}}}
---
apiVersion: ubiq.io/v1alpha1
kind: GlobalService
metadata: {{name: near}}
spec:
  name: {name}
  zone: gtm.example
  service: app
  strategy: lowestLatency
  ttl: 1s
  targets:
  - {{cluster: eu-west, address: {eu}, port: {eu_port}}}
  - {{cluster: us-west, address: {us}, port: {us_port}}}
  clientGroups: [{{name: america, cidrs: [{america}], region: us-west}}]
  latency: {{america: {{eu-west: 150ms, us-west: 20ms}}}}
  healthCheck: {{http: {{path: /healthz}}, interval: 200ms, timeout: 150ms, unhealthyThreshold: 1, healthyThreshold: 1}}
"""
)


def test_the_answer_moves_when_the_minimum_dwell_ends(tmp_path: Path) -> None:
    eu, us = Backend(EU), Backend(US)
    eu.start()  # us-west starts down
    root = tmp_path / "policies"
    root.mkdir()
    text = POLICY.format(
        name=NAME, eu=EU, us=US, eu_port=eu.port, us_port=us.port, america=AMERICA, dwell=DWELL_S
    )
    (root / "global.yaml").write_text(text)
    dns_port, api_port, xds_port = free_udp_tcp_port(), free_port(), free_port()
    argv = [
        sys.executable, "-m", "controlplane.cli", "--log-format", "json", "serve", str(root),
        "--xds", f"127.0.0.1:{xds_port}", "--api", f"127.0.0.1:{api_port}",
        "--dns", f"127.0.0.1:{dns_port}",
    ]  # fmt: skip
    api = f"http://127.0.0.1:{api_port}"

    def answer() -> list[str]:
        return dig("127.0.0.1", dns_port, NAME, "A", f"+subnet={AMERICA}").rdata("A")

    def health() -> dict[str, bool]:
        return {r["cluster"]: r["healthy"] for r in httpx.get(f"{api}/v1/gtm/health").json()}

    def explain() -> dict[str, Any]:
        reply = httpx.get(f"{api}/v1/gtm/explain", params={"name": NAME, "client": "127.0.30.9"})
        reply.raise_for_status()
        return dict(reply.json())

    try:
        with running(argv, log=tmp_path / "ubiq.log"):
            wait_for_port("127.0.0.1", api_port, 20)
            wait_for(lambda: health() == {"eu-west": True, "us-west": False}, 10, "us-west down")
            wait_for(lambda: answer() == [EU], 10, "america answered eu-west")
            us.start()
            wait_for(lambda: health() == {"eu-west": True, "us-west": True}, 10, "us-west up")

            # the placement's dwell held eu-west against the better us-west when us-west came
            # back (the service decision, which Envoy follows too, says so) ...
            def held_or_moved() -> bool:
                why = explain()
                held = any("(hold.dwell)" in r for r in why["reasons"])
                return held or why["answer"]["regions"] == ["us-west"]

            wait_for(held_or_moved, 10, "the decision's dwell holds eu-west (or it has ended)")
            # ... and nothing but the end of the dwell moves the answer now
            wait_for(lambda: answer() == [US], DWELL_S + 10, "america moved to us-west")
            after = explain()
            assert after["answer"]["regions"] == ["us-west"]
            assert after["answer"]["dwellUntil"] is None
            assert after["answer"]["answeredForS"] >= 0.0
            assert after["reasons"][0].startswith("placement (lowestLatency): us-west")
            assert any(r.startswith("group america latency: us-west") for r in after["reasons"])
    finally:
        eu.kill()
        us.kill()
