"""`ubiq serve` as a real process: a real Envoy follows live policy edits, dig gets steered answers,
a broken edit is refused while everything keeps serving, and `ubiq status` shows it all."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from controlplane.demo.backends import DemoBackend
from tests.support.dns import dig
from tests.support.envoy import EnvoyProcess, envoy
from tests.support.poll import wait_until
from tests.support.procs import free_port, require_binary
from tests.support.ubiq_serve import (
    EXAMPLE,
    Served,
    eu_checkout_backends,
    serving,
    three_regions,
    versions,
)


@dataclass
class Mesh:
    """``ubiq serve`` over the example and a real Envoy of eu-west following it."""

    root: Path
    listener: int  # the Envoy's HTTP listener
    serve: Served
    proxy: EnvoyProcess

    def status(self) -> dict[str, object]:
        return dict(httpx.get(f"{self.serve.api}/v1/status", timeout=5).json())


@pytest.fixture
def checkout_port() -> int:
    """The port of the eu-west checkout backends (the example's 18001 may be taken)."""
    return free_port("127.0.2.1")


@pytest.fixture
def served(tmp_path: Path, checkout_port: int) -> Iterator[Mesh]:
    root = tmp_path / "policies"
    three_regions(root, checkout_port)
    listener = free_port()
    flags = ("--listener-address", "127.0.0.1", "--listener-port", str(listener))
    with (
        serving(root, tmp_path, *flags) as serve,
        envoy(
            tmp_path, xds_port=serve.xds_port, node_id="envoy-eu", cluster="eu-west",
            region="eu-west",
        ) as proxy,
    ):  # fmt: skip
        yield Mesh(root, listener, serve, proxy)


@pytest.fixture
def backends(checkout_port: int) -> Iterator[list[DemoBackend]]:
    with eu_checkout_backends(checkout_port) as started:
        yield started


def test_live_edits_bad_edits_dns_and_status(served: Mesh, backends: list[DemoBackend]) -> None:
    serve, proxy = served.serve, served.proxy
    base = f"http://127.0.0.1:{served.listener}"
    with httpx.Client(base_url=base, timeout=5) as client:
        wait_until(lambda: versions(client, 1) == {"v2"}, 20, "header canary routed to v2")

        # live edit: the header canary now goes to v1; Envoy follows without a restart
        routes = served.root / "routes.yaml"
        good = routes.read_text()
        routes.write_text(
            good.replace(
                "route: [{service: checkout, subset: v2}]",
                "route: [{service: checkout, subset: v1}]",
            )
        )
        wait_until(lambda: versions(client, 5) == {"v1"}, 10, "canary rule now routes to v1")

        # a broken edit is rejected; Envoy keeps the last good config, the API says why
        routes.write_text(good.replace("subset: v2}]", "subset: v7}]"))
        wait_until(lambda: served.status()["policy"]["ok"] is False, 10, "rejection reported")  # type: ignore[index]
        problems = served.status()["policy"]["problems"]  # type: ignore[index]
        assert any("has no subset 'v7'" in p for p in problems)
        assert versions(client, 10) == {"v1"}

    # DNS: steered by client subnet, from the same process
    europe = dig("127.0.0.1", serve.dns_port, "checkout.gtm.example", "A", "+subnet=203.0.113.0/24")
    america = dig("127.0.0.1", serve.dns_port, "checkout.gtm.example", "A", "+subnet=192.0.2.0/24")
    assert europe.status == america.status == "NOERROR"
    assert europe.answer != america.answer

    # the API: explanations, with clear errors for bad input, and Ubiq's own metrics
    explain = f"{serve.api}/v1/gtm/explain"
    got = httpx.get(explain, params={"name": "checkout.gtm.example", "client": "203.0.113.7"})
    assert got.status_code == 200 and got.json()["group"]["name"] == "europe"
    bad = httpx.get(explain, params={"name": "checkout.gtm.example", "client": "not-an-ip"})
    assert bad.status_code == 422 and "expected an IP address" in bad.text
    unknown = httpx.get(explain, params={"name": "nope.example", "client": "203.0.113.7"})
    assert unknown.status_code == 404
    metrics = httpx.get(f"{serve.api}/metrics").text
    assert 'ubiq_xds_connected_proxies{group="eu-west/proxy"} 1.0' in metrics
    assert "ubiq_gtm_answer{" in metrics and "ubiq_dns_responses_total{" in metrics
    linted = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=metrics, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert linted.returncode == 0 and not linted.stdout.strip(), linted.stdout + linted.stderr

    # `ubiq status` shows the proxy with its ACKed versions
    out = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "status", "--api", serve.api],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert out.returncode == 5, out.stderr  # the server runs, but refused the last change
    assert "REJECTED last change" in out.stdout
    assert "envoy-eu" in out.stdout and "eu-west" in out.stdout
    proxies = served.status()["proxies"]
    assert [p["nodeId"] for p in proxies] == ["envoy-eu"]  # type: ignore[index,union-attr]
    assert len(proxies[0]["acked"]) == 4  # type: ignore[index]
    assert proxy.ready()
    time.sleep(0)  # keep the fixture order explicit: Envoy stops before ubiq serve


def test_ubiq_demo_runs_end_to_end() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "--log-level", "warning", "demo", str(EXAMPLE)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "in eu-west: GET /api/cart" in text  # the 90/10 rule (its 1% abort may also show)
    assert "200 checkout v2 in eu-west" in text  # header canary
    split = next(line for line in text.splitlines() if "v1: " in line and "v2: " in line)
    counts = dict(part.strip().split(": ") for part in split.split(","))
    assert int(counts["v1"]) > int(counts["v2"]) > 0  # 400 requests, 90/10
    assert "301 location: http://checkout.mesh.example/api/checkout" in text
    assert "405 payments accepts POST only" in text
    assert "europe clients: 127.0.0.12 -> " in text  # failover happened
    assert "Prometheus on http://127.0.0.1:" in text  # scraping the demo's Envoys and Ubiq
    assert "Grafana dashboards: " in text
    lines = text.splitlines()
    europe = lines[lines.index(next(line for line in lines if "# europe" in line)) + 1]
    america = lines[lines.index(next(line for line in lines if "# america" in line)) + 1]
    assert (europe, america) == ("127.0.0.12", "127.0.0.13")
