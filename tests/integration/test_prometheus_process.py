"""The Prometheus launcher: a real Prometheus scrapes a real Envoy's /stats/prometheus."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from controlplane.ports import free_port
from controlplane.prometheus.config import envoy_job, render_config
from controlplane.prometheus.process import wait_for_series
from tests.support.envoy import envoy
from tests.support.procs import require_binary
from tests.support.prometheus import prometheus

pytestmark = pytest.mark.integration


def test_scrapes_envoy_with_cluster_and_region_labels(tmp_path: Path) -> None:
    with envoy(tmp_path, xds_port=free_port(), cluster="eu-west-1", region="eu-west") as proxy:
        job = envoy_job({f"127.0.0.1:{proxy.admin_port}": ("eu-west-1", "eu-west")})
        with prometheus(tmp_path, [job]) as prom:
            series = wait_for_series(prom, 'envoy_server_concurrency{job="envoy"}')
            assert series[0]["metric"]["ubiq_cluster"] == "eu-west-1"
            assert series[0]["metric"]["ubiq_region"] == "eu-west"
            assert series[0]["value"][1] == "1"  # --concurrency 1

            up = prom.query('up{job="envoy"}')
            assert [s["value"][1] for s in up] == ["1"]


def test_reload_picks_up_a_new_target(tmp_path: Path) -> None:
    with envoy(tmp_path, xds_port=free_port()) as proxy, prometheus(tmp_path, []) as prom:
        assert prom.query("up") == []
        job = envoy_job({f"127.0.0.1:{proxy.admin_port}": ("eu-west-1", "eu-west")})
        prom.config.write_text(render_config([job]))
        prom.reload()
        assert wait_for_series(prom, 'up{job="envoy"} == 1')


def test_rendered_config_passes_promtool(tmp_path: Path) -> None:
    job = envoy_job({"127.0.0.1:9901": ("eu-west-1", "eu-west"), "[::1]:9902": ("us", "us-east")})
    config = tmp_path / "prometheus.yml"
    config.write_text(render_config([job], scrape_interval="2s"))
    checked = subprocess.run(
        [require_binary("promtool"), "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = config.read_text()
    assert "scrape_timeout: 2s" in text
    assert text.count("ubiq_region:") == 2
